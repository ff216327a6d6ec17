package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/charmbracelet/log"
)

// record is one JSON log line taken apart again for the stderr copy, with
// its fields in their original order.
type record struct {
	time   time.Time
	level  log.Level
	msg    string
	prefix string
	attrs  []slog.Attr
}

func (r *record) slog() slog.Record {
	sr := slog.NewRecord(r.time, slog.Level(r.level), r.msg, 0)
	sr.AddAttrs(r.attrs...)
	return sr
}

// parseRecord decodes a line written by the JSON formatter; nil if it is
// not one.
func parseRecord(line []byte) *record {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	r := &record{level: log.InfoLevel}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		v := value(raw)
		s, isString := v.(string)
		switch {
		case key == log.TimestampKey && isString:
			if t, err := time.Parse(TimeFormat, s); err == nil {
				r.time = t
				continue
			}
		case key == log.LevelKey && isString:
			if l, err := log.ParseLevel(s); err == nil {
				r.level = l
				continue
			}
		case key == log.MessageKey && isString:
			r.msg = s
			continue
		case key == log.PrefixKey && isString:
			r.prefix = s
			continue
		}
		r.attrs = append(r.attrs, slog.Any(key, v))
	}
	return r
}

// value turns a JSON value into what the text formatter prints best:
// strings unquoted, numbers as written, objects and arrays as compact JSON.
func value(raw json.RawMessage) any {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	switch v := v.(type) {
	case string, bool, json.Number, nil:
		return v
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
