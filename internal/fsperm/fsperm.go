// Package fsperm is Talon's StrictModes, after sshd's: a file Talon evaluates
// or runs (a policy file, config.toml, services.toml, a program named in the
// config, the worker's env file, a secret) must be one that no other local
// user can change. Otherwise another user could have Talon run their code as
// the daemon's user, who is often an administrator and sometimes root.
//
// A file is safe when it is owned by the daemon's user or by root and is not
// writable by group or others, and when every directory on the way to it,
// from / down, is safe in the same way. A directory that group or others may
// write is still safe when it has the sticky bit and a safe owner (/tmp):
// there nobody can rename or remove another user's entries. Symbolic links
// are followed the way the kernel follows them, and every directory the
// resolution consults is checked, so a link cannot lead around the rule; a
// link in a sticky directory must itself be owned by root or the daemon's
// user (Linux's protected_symlinks). This is OpenSSH's safe_path, with the
// sticky exception.
//
// Where a file is read, the check is made on the file actually opened: its
// owner and mode come from fstat on the open descriptor, then the path is
// walked and its last element must be that same file (device and inode), so
// a rename between the check and the read cannot slip another file in.
// Programs are checked by path (exec reads the file itself), so between the
// check at load and a later run a program can change — but only by someone
// the check already trusts.
//
// Limits: only owners and permission bits are read. POSIX or macOS ACLs that
// grant others write access are not seen (sshd does not look at them either),
// and group-writable files are refused even when the group is the user's
// private group.
//
// A Checker made with strict false (config.toml's strict_modes = false)
// reports unsafe files to its warn function and lets them through.
package fsperm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Checker checks files for one daemon user. A nil *Checker is strict and
// checks for the process's effective user.
type Checker struct {
	uid  uint32
	warn func(*Error) // nil unless relaxed
	// relaxed lets unsafe files through (strict_modes = false).
	relaxed bool
}

// New returns a Checker for the daemon's user (the effective uid). With
// strict false, an unsafe file is passed to warn (which may be nil) and
// allowed instead of refused.
func New(strict bool, warn func(*Error)) *Checker {
	c := &Checker{uid: uint32(os.Geteuid())}
	if !strict {
		c.relaxed, c.warn = true, warn
	}
	return c
}

// Strict reports whether unsafe files are refused.
func (c *Checker) Strict() bool { return c == nil || !c.relaxed }

func (c *Checker) daemonUID() uint32 {
	if c == nil {
		return uint32(os.Geteuid())
	}
	return c.uid
}

// verdict turns a finding into the caller's error: the finding itself when
// strict, nil (after warning) when relaxed.
func (c *Checker) verdict(e *Error) error {
	if e == nil {
		return nil
	}
	if c.Strict() {
		return e
	}
	if c.warn != nil {
		c.warn(e)
	}
	return nil
}

// Open opens path for reading and checks the file it opened (see Check).
// Errors from opening are returned as os.Open returns them, so
// errors.Is(err, fs.ErrNotExist) still tells a missing file; a refusal is an
// *Error. The open never blocks, and a named pipe, a socket or a device is
// refused with a *NotRegularError: a FIFO put in place of a policy or config
// file must not hang whoever reads it. (A directory opens, for CheckPath's
// sake; reading it fails.)
func (c *Checker) Open(path string) (*os.File, error) {
	f, err := openNonblock(path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil {
		f.Close()
		return nil, err
	} else if special(fi.Mode()) {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	if err := c.Check(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenRegular opens path for reading if it is a regular file, without
// blocking on it; anything else is refused with a *NotRegularError.
func OpenRegular(path string) (*os.File, error) {
	f, err := openNonblock(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return f, nil
}

// openNonblock opens path read-only with O_NONBLOCK, which a regular file
// ignores and which keeps the open of a named pipe without a writer from
// blocking for good. A socket, which cannot be opened at all, is reported
// as what it is.
func openNonblock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			if fi, serr := os.Stat(path); serr == nil && special(fi.Mode()) {
				return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
			}
		}
		return nil, err
	}
	return f, nil
}

func special(m fs.FileMode) bool {
	return m&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice|fs.ModeIrregular) != 0
}

// NotRegularError is a path that names something other than a regular file
// where Talon reads one.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string { return e.Path + " " + e.Reason() }

// Reason is the error without the path, for messages that name the file
// already ("config.toml: is a named pipe, ...").
func (e *NotRegularError) Reason() string {
	return fmt.Sprintf("is %s, not a regular file; replace it with the file itself", kind(e.Mode))
}

// Check checks f, opened from path: the open file's owner and mode (fstat),
// every directory on the way to path, and that path still names f.
func (c *Checker) Check(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return c.check(path, fi)
}

// CheckPath checks the file or directory at path without opening it: for a
// program Talon runs, or a directory whose files it reads. Symbolic links
// are followed, and the directories they pass through are checked too.
func (c *Checker) CheckPath(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return c.check(path, fi)
}

func (c *Checker) check(path string, opened fs.FileInfo) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	uid := c.daemonUID()
	final, err := walk(abs, uid)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Target = abs
			return c.verdict(e)
		}
		return err
	}
	if !os.SameFile(opened, final.fi) {
		return fmt.Errorf("%s changed while it was being checked; try again", abs)
	}
	if e := judge(final.path, final.fi, uid, false); e != nil {
		e.Target = abs
		return c.verdict(e)
	}
	return nil
}

type found struct {
	path string
	fi   fs.FileInfo
}

// maxLinks bounds the symbolic links one walk follows, as the kernel does.
const maxLinks = 40

// walk resolves abs from / one name at a time, following symbolic links,
// and judges every directory it looks a name up in. It returns the last
// element (Lstat, never a link) and its resolved path.
func walk(abs string, uid uint32) (found, error) {
	root, err := os.Lstat("/")
	if err != nil {
		return found{}, err
	}
	if e := judge("/", root, uid, true); e != nil {
		return found{}, e
	}
	dir, dirFI := "/", root
	pending := names(abs)
	links := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// dir is always a resolved directory, so its parent is the
			// real one, and every ancestor of dir was judged on the way down.
			dir = filepath.Dir(dir)
			if dirFI, err = os.Lstat(dir); err != nil {
				return found{}, err
			}
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			return found{}, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			links++
			if links > maxLinks {
				return found{}, &fs.PathError{Op: "resolve", Path: abs, Err: syscall.ELOOP}
			}
			// In a directory others may write (a sticky one, or judge
			// would have refused it), a link is trusted only from a
			// trusted owner: anyone can plant one there.
			if dirFI.Mode().Perm()&0o022 != 0 && !trustedOwner(fi, uid) {
				return found{}, newError(p, fi, uid, problemLink)
			}
			target, err := os.Readlink(p)
			if err != nil {
				return found{}, err
			}
			if filepath.IsAbs(target) {
				dir, dirFI = "/", root
			}
			pending = append(names(target), pending...)
			continue
		}
		if last(pending) {
			return found{path: p, fi: fi}, nil
		}
		if !fi.IsDir() {
			return found{}, &fs.PathError{Op: "resolve", Path: p, Err: syscall.ENOTDIR}
		}
		if e := judge(p, fi, uid, true); e != nil {
			return found{}, e
		}
		dir, dirFI = p, fi
	}
	// abs named "/" itself, or ended in ".." (check judges it again as
	// the file checked, where sticky is no excuse).
	fi, err := os.Lstat(dir)
	if err != nil {
		return found{}, err
	}
	return found{path: dir, fi: fi}, nil
}

func names(p string) []string { return strings.Split(p, "/") }

// last reports whether nothing but "" and "." is left to resolve.
func last(pending []string) bool {
	for _, n := range pending {
		if n != "" && n != "." {
			return false
		}
	}
	return true
}

// Problems found with a file.
const (
	problemOwner = 1 << iota
	problemGroupWrite
	problemOtherWrite
	problemLink
)

// judge checks one file or directory. A directory on the way (parent true)
// may be writable by others when it is sticky; the checked file itself may
// not, even when it is a directory.
func judge(path string, fi fs.FileInfo, uid uint32, parent bool) *Error {
	var problems int
	if !trustedOwner(fi, uid) {
		problems |= problemOwner
	}
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 && !(parent && fi.Mode()&fs.ModeSticky != 0) {
		if perm&0o020 != 0 {
			problems |= problemGroupWrite
		}
		if perm&0o002 != 0 {
			problems |= problemOtherWrite
		}
	}
	if problems == 0 {
		return nil
	}
	return newError(path, fi, uid, problems)
}

func trustedOwner(fi fs.FileInfo, uid uint32) bool {
	o := owner(fi)
	return o == 0 || o == uid
}

func owner(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0) // unknown: never trusted
}

// Error is an unsafe file, directory or link. Its text is one line naming
// the path, its owner and mode, what is wrong and the command that fixes it.
type Error struct {
	// Path is what is unsafe: the file itself or a directory (or link) on
	// the way to it.
	Path string
	// Target is the file that was being checked (absolute).
	Target string
	// Kind is "file", "directory" or "symbolic link".
	Kind string
	// UID owns Path; Owner is its name, when it has one.
	UID   uint32
	Owner string
	// Mode is Path's permission bits, with setuid, setgid and sticky.
	Mode fs.FileMode
	// User is the daemon's user (a name, or the uid when it has none).
	User     string
	problems int
}

func newError(path string, fi fs.FileInfo, uid uint32, problems int) *Error {
	e := &Error{Path: path, UID: owner(fi), Mode: fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid),
		User: userName(uid), problems: problems}
	e.Owner = userName(e.UID)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Kind = "symbolic link"
	case fi.IsDir():
		e.Kind = "directory"
	default:
		e.Kind = "file"
	}
	return e
}

// Octal is the mode as chmod spells it: 0644, 1777.
func (e *Error) Octal() string {
	m := uint32(e.Mode.Perm())
	if e.Mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if e.Mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if e.Mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Sprintf("%04o", m)
}

// Fix is the shell command that makes Path safe.
func (e *Error) Fix() string {
	q := shellQuote(e.Path)
	var cmds []string
	if e.problems&problemLink != 0 {
		return "rm " + q + " (and name the real file instead)"
	}
	if e.problems&problemOwner != 0 {
		cmds = append(cmds, "chown "+shellQuote(e.User)+" "+q)
	}
	if e.problems&(problemGroupWrite|problemOtherWrite) != 0 {
		cmds = append(cmds, "chmod go-w "+q)
	}
	return strings.Join(cmds, " && ")
}

func (e *Error) Error() string {
	var what []string
	if e.problems&problemLink != 0 {
		what = append(what, "a link in a directory others can write, owned by another user")
	}
	if e.problems&problemOwner != 0 {
		if e.User == "root" {
			what = append(what, "owned by a user other than root")
		} else {
			what = append(what, fmt.Sprintf("owned by a user other than %s or root", e.User))
		}
	}
	switch e.problems & (problemGroupWrite | problemOtherWrite) {
	case problemGroupWrite:
		what = append(what, "writable by group")
	case problemOtherWrite:
		what = append(what, "writable by others")
	case problemGroupWrite | problemOtherWrite:
		what = append(what, "writable by group and others")
	}
	owner := e.Owner
	if owner != strconv.FormatUint(uint64(e.UID), 10) {
		owner += ", uid " + strconv.FormatUint(uint64(e.UID), 10)
	} else {
		owner = "uid " + owner
	}
	return fmt.Sprintf("unsafe %s %s (owner %s, mode %s): %s; fix: %s",
		e.Kind, e.Path, owner, e.Octal(), strings.Join(what, " and "), e.Fix())
}

// Warning is the text of a finding that strict_modes = false let through.
func (e *Error) Warning() string {
	s := e.Error()
	if e.Target != "" && e.Target != e.Path {
		s = e.Target + ": " + s
	}
	return s + " (used anyway: strict_modes = false)"
}

var userNames sync.Map // uid → name

// userName is the name of uid, or the uid in decimal when it has none.
func userName(uid uint32) string {
	if v, ok := userNames.Load(uid); ok {
		return v.(string)
	}
	s := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(s); err == nil && u.Username != "" {
		s = u.Username
	}
	userNames.Store(uid, s)
	return s
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@%=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
