package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/talon-dev/talon/internal/fsperm"
)

// WriteFileAtomic writes data to path so that a reader sees either the old
// file or the new one, never a mix, and a crash leaves no half-written file:
// temp file in the same directory, fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// tempPattern is the name of WriteFileAtomic's temp file for path.
func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// RemoveStaleTemps removes the temp files that WriteFileAtomic leaves next
// to path when the process is killed between creating and renaming one
// (kill -9 during a save), and returns their names. Only the owner of path
// may call it, at start: another writer's temp file may be in flight.
func RemoveStaleTemps(path string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, m := range matches {
		if fi, err := os.Lstat(m); err != nil || !fi.Mode().IsRegular() {
			continue // not ours
		}
		if err := os.Remove(m); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, filepath.Base(m))
	}
	return removed, errors.Join(errs...)
}

// SaveState persists s atomically as compact JSON, without the probes'
// last outputs: those are in the journal, and re-encoding every probe's
// output (up to 64 KiB each) on every save was most of a large policy's
// cost. After a restart a probe's last output is empty until it runs
// again; the ladder does not act on results from before a start anyway.
// A file written with outputs (and indented) by an older Talon still loads.
func SaveState(path string, s *State) error {
	data, err := EncodeState(s)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	return nil
}

// EncodeState is the content of state.json for s: one line of JSON without
// the probes' last outputs. s is not changed.
func EncodeState(s *State) ([]byte, error) {
	c := *s
	c.Probes = make(map[string]*ProbeState, len(s.Probes))
	for name, ps := range s.Probes {
		if ps != nil && ps.Last != nil && ps.Last.Output != "" {
			cp, last := *ps, *ps.Last
			last.Output = ""
			cp.Last = &last
			ps = &cp
		}
		c.Probes[name] = ps
	}
	data, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return append(data, '\n'), nil
}

// ErrNoState is returned by LoadState when there is no state file yet.
var ErrNoState = errors.New("no state file")

// LoadState reads a state file strictly: unknown fields, a wrong version,
// an unknown phase or trailing garbage are errors. It never substitutes
// defaults for a file it could not read.
//
// A symbolic link in place of the file is an error, not followed: the state
// directory holds only Talon's own files.
func LoadState(path string) (*State, error) {
	data, err := fsperm.ReadPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoState
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s State
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %v", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("state file %s is corrupt: trailing data after the JSON object", path)
	}
	if s.Version != StateVersion {
		return nil, fmt.Errorf("state file %s has version %d, this talon reads version %d", path, s.Version, StateVersion)
	}
	if !ValidPhase(s.Phase) {
		return nil, fmt.Errorf("state file %s is corrupt: unknown phase %q", path, s.Phase)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %v", path, err)
	}
	if s.Probes == nil {
		s.Probes = map[string]*ProbeState{}
	}
	if s.LastRun == nil {
		s.LastRun = map[string]time.Time{}
	}
	if s.LastSent == nil {
		s.LastSent = map[string]time.Time{}
	}
	if s.Incident != nil && s.Incident.Rungs == nil {
		s.Incident.Rungs = map[string]*RungState{}
	}
	return &s, nil
}

// SetAside renames a corrupt state file out of the way and returns the new name,
// so that the evidence is kept and the daemon can start fresh, loudly.
func SetAside(path string, now time.Time) (string, error) {
	dst := fmt.Sprintf("%s.corrupt-%s", path, now.UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// check rejects shapes the JSON decoder accepts but the state machine
// cannot use, so a bad file is set aside instead of crashing the daemon.
func (s *State) check() error {
	for name, ps := range s.Probes {
		if ps == nil {
			return fmt.Errorf("probe %q has no state", name)
		}
		if ps.Fails < 0 || ps.Passes < 0 {
			return fmt.Errorf("probe %q has negative counts", name)
		}
	}
	if s.ConsecutiveFailures < 0 || s.Incidents < 0 {
		return fmt.Errorf("negative counters")
	}
	if inc := s.Incident; inc != nil {
		if inc.ID == "" {
			return fmt.Errorf("incident without an id")
		}
		if inc.Position < 0 {
			return fmt.Errorf("incident %s has ladder position %d", inc.ID, inc.Position)
		}
		for name, rs := range inc.Rungs {
			if rs == nil {
				return fmt.Errorf("incident %s: rung %q has no state", inc.ID, name)
			}
		}
	}
	return nil
}
