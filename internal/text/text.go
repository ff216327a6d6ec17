// Package text holds the small string helpers Talon's packages share: cutting
// text to a size at a character boundary (never in the middle of a UTF-8
// sequence), and picking lines.
package text

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Mark is what a cut leaves at its end.
const Mark = "…"

// Cap cuts s to at most n bytes, at a character boundary, ending with Mark
// when it cut anything. Invalid UTF-8 is kept as it is; only the cut is
// placed on a boundary.
func Cap(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < len(Mark) {
		return Mark[:0]
	}
	return prefix(s, n-len(Mark)) + Mark
}

// prefix is the longest prefix of s of at most n bytes that does not end
// inside a character.
func prefix(s string, n int) string {
	if n >= len(s) {
		return s
	}
	// Step back over continuation bytes to the start of the character that
	// the cut would split, if it is a valid one.
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if r, size := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || size > 1 {
				return s[:i]
			}
			break
		}
	}
	return s[:n]
}

// Runes keeps at most n characters of s, the last of them Mark when it cut
// anything.
func Runes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	i, count := 0, 0
	for j := range s {
		if count == n-1 {
			i = j
			break
		}
		count++
	}
	return s[:i] + Mark
}

// FirstLines is the first n lines of s, without the newline that ends them.
func FirstLines(s string, n int) string {
	count := 0
	for i, c := range s {
		if c == '\n' {
			count++
			if count == n {
				return s[:i]
			}
		}
	}
	return s
}

// FirstLine is the first line of s, cut to at most n bytes.
func FirstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	return Cap(strings.TrimSuffix(s, "\r"), n)
}

// LastLine is the last non-blank line of s, trimmed, cut to at most n characters.
func LastLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return Runes(strings.TrimSpace(s), n)
}

// Quote is s quoted as Go does (%q), cut first to at most n bytes.
func Quote(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(prefix(s, n)) + Mark
}
