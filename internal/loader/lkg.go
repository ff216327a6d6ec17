package loader

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/internal/fsperm"
)

// The files of the last known good policy in the state directory.
const (
	LastGoodFile     = "last-good.json"
	FallbackPageFile = "fallback-page.json"
)

// Store keeps the last known good policy in the state directory: every
// file of the last policy that loaded cleanly (the policy files, the
// services file, config.toml) with the bytes it was loaded from, so that a
// daemon that starts with a broken file can run it. Its files are private
// (fsperm.OpenPrivate: 0600, never through a link) and replaced whole
// (temp file, fsync, rename).
type Store struct{ dir string }

// NewStore keeps the last known good policy in stateDir, which the daemon
// has already claimed (created 0700 and checked).
func NewStore(stateDir string) *Store { return &Store{dir: stateDir} }

// LastGood is a policy that loaded cleanly, as kept.
type LastGood struct {
	Version int       `json:"version"`
	Saved   time.Time `json:"saved"`
	Hash    string    `json:"hash"`
	// PolicyDir is the canonical policy directory, or EmbeddedName.
	PolicyDir string `json:"policy_dir"`
	Files     []File `json:"files"`
}

// File is one file of a LastGood: what it was called in the hash, where
// it was, and its text. Missing marks a file that was looked for and did
// not exist (a services file the policy names but that is not there).
type File struct {
	Key     string `json:"key"`
	Path    string `json:"path,omitempty"`
	Text    string `json:"text"`
	Missing bool   `json:"missing,omitempty"`
}

const lastGoodVersion = 1

// Load reads the last known good policy; nil when there is none.
func (s *Store) Load() (*LastGood, error) {
	b, err := fsperm.ReadPrivate(filepath.Join(s.dir, LastGoodFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var lg LastGood
	if err := json.Unmarshal(b, &lg); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(s.dir, LastGoodFile), err)
	}
	if lg.Version != lastGoodVersion {
		return nil, fmt.Errorf("%s: version %d, want %d", filepath.Join(s.dir, LastGoodFile), lg.Version, lastGoodVersion)
	}
	return &lg, nil
}

// Save keeps res, a clean load of the policy in dir, unless it is the one
// kept already.
func (s *Store) Save(res *engine.LoadResult, dir string, now time.Time) error {
	if old, err := s.Load(); err == nil && old != nil && old.Hash == res.Hash && old.PolicyDir == dir {
		return nil
	}
	lg := LastGood{Version: lastGoodVersion, Saved: now.UTC(), Hash: res.Hash, PolicyDir: dir}
	for _, src := range res.Sources {
		if !utf8.Valid(src.Data) {
			return fmt.Errorf("%s is not UTF-8 text; not kept", src.Path)
		}
		lg.Files = append(lg.Files, File{Key: src.Key, Path: src.Path, Text: string(src.Data), Missing: src.Data == nil})
	}
	b, err := json.MarshalIndent(lg, "", "  ")
	if err != nil {
		return err
	}
	return s.write(LastGoodFile, append(b, '\n'))
}

// write replaces the private file name with b: a temp file, fsync, rename,
// fsync of the directory. A crash leaves the old file or the new one.
func (s *Store) write(name string, b []byte) error {
	path := filepath.Join(s.dir, name)
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	os.Remove(tmp) // a leftover of a crash of this very pid
	f, err := fsperm.OpenPrivate(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// fallbackPage records that the page announcing a fallback went out, for
// which error: a daemon that restarts in a loop with the same broken file
// pages once, not at every start.
type fallbackPage struct {
	Error string    `json:"error"` // sha256 of the error text
	Sent  time.Time `json:"sent"`
}

// errorKey identifies an error text.
func errorKey(text string) string {
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:])
}

// Paged reports whether the fallback page for this error went out already.
func (s *Store) Paged(errText string) bool {
	b, err := fsperm.ReadPrivate(filepath.Join(s.dir, FallbackPageFile))
	if err != nil {
		return false
	}
	var p fallbackPage
	return json.Unmarshal(b, &p) == nil && p.Error == errorKey(errText)
}

// MarkPaged records that the fallback page for this error went out.
func (s *Store) MarkPaged(errText string, at time.Time) error {
	b, err := json.Marshal(fallbackPage{Error: errorKey(errText), Sent: at.UTC()})
	if err != nil {
		return err
	}
	return s.write(FallbackPageFile, append(b, '\n'))
}

// memFS serves the files of a LastGood to builtins.Load, as a policy
// directory.
type memFS map[string][]byte

func (m memFS) Open(name string) (fs.File, error) {
	b, ok := m[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{name: name, Reader: bytes.NewReader(b), size: int64(len(b))}, nil
}

type memFile struct {
	*bytes.Reader
	name string
	size int64
}

func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{f}, nil }
func (f *memFile) Close() error               { return nil }

type memInfo struct{ f *memFile }

func (i memInfo) Name() string       { return filepath.Base(i.f.name) }
func (i memInfo) Size() int64        { return i.f.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

var _ io.Reader = (*memFile)(nil)

// policyFiles are the policy files of lg, by their name in the directory.
func (lg *LastGood) policyFiles() memFS {
	m := memFS{}
	for _, f := range lg.Files {
		if !strings.Contains(f.Key, ":") && !f.Missing {
			m[f.Key] = []byte(f.Text)
		}
	}
	return m
}

// config is the kept config.toml: its path and bytes (nil: it did not exist).
func (lg *LastGood) config() (path string, data []byte, ok bool) {
	for _, f := range lg.Files {
		if f.Key == "config:" {
			if f.Missing {
				return f.Path, nil, true
			}
			return f.Path, []byte(f.Text), true
		}
	}
	return "", nil, false
}

// readServices serves the kept services files to services().
func (lg *LastGood) readServices(path string) ([]byte, error) {
	for _, f := range lg.Files {
		if strings.HasPrefix(f.Key, "services:") && f.Path == path {
			if f.Missing {
				break
			}
			return []byte(f.Text), nil
		}
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
}

// paths are where the files of lg were on disk: its policy files, its
// services files and config.toml, and the entry file of its directory.
func (lg *LastGood) paths() []string {
	var out []string
	if lg.PolicyDir != EmbeddedName {
		out = append(out, filepath.Join(lg.PolicyDir, "talon.star"))
	}
	for _, f := range lg.Files {
		if f.Path != "" {
			out = append(out, f.Path)
		}
	}
	return out
}

// LastGoodConfig is the config.toml of the last good policy kept in
// stateDir, as it read then; nil when there is none. It is what a daemon
// whose config.toml does not read runs with, so commands that look for
// the daemon (talon status) look there too.
func LastGoodConfig(stateDir string) *config.Config {
	lg, err := NewStore(stateDir).Load()
	if err != nil || lg == nil {
		return nil
	}
	path, data, ok := lg.config()
	if !ok || data == nil {
		return nil
	}
	c, err := config.Parse(path, data)
	if err != nil {
		return nil
	}
	return c
}
