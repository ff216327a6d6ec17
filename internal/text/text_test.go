package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 5, "hello"},
		{"hello world", 8, "hello…"},
		{"héllo wörld", 6, "hé…"}, // "é" is 2 bytes, the mark 3
		{"日本語テキスト", 9, "日本…"},     // 3-byte characters: 6 bytes kept + 3 for the mark
		{"日本語テキスト", 8, "日…"},      // never half a character
		{"abc", 2, ""},
		{"a\xffbcdef", 5, "a\xff…"},
	} {
		got := Cap(tc.s, tc.n)
		if got != tc.want {
			t.Errorf("Cap(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
		if len(got) > tc.n {
			t.Errorf("Cap(%q, %d) = %q is %d bytes", tc.s, tc.n, got, len(got))
		}
	}
}

// TestCapNeverSplitsACharacter cuts valid UTF-8 at every length: the result
// is always valid UTF-8 and at most that long.
func TestCapNeverSplitsACharacter(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("aé日🙂", 20)
	for n := 0; n <= len(s)+1; n++ {
		got := Cap(s, n)
		if !utf8.ValidString(got) || len(got) > n {
			t.Fatalf("Cap(s, %d) = %q (%d bytes, valid %v)", n, got, len(got), utf8.ValidString(got))
		}
		if !strings.HasPrefix(s, strings.TrimSuffix(got, Mark)) {
			t.Fatalf("Cap(s, %d) = %q is not a prefix of s", n, got)
		}
	}
}

func TestLines(t *testing.T) {
	t.Parallel()
	if got := FirstLines("a\nb\nc", 2); got != "a\nb" {
		t.Errorf("FirstLines = %q", got)
	}
	if got := FirstLines("a", 3); got != "a" {
		t.Errorf("FirstLines = %q", got)
	}
	if got := FirstLine("first line is long\r\nsecond", 10); got != "first l…" {
		t.Errorf("FirstLine = %q", got)
	}
	if got := LastLine("a\nlast one  \n\n", 100); got != "last one" {
		t.Errorf("LastLine = %q", got)
	}
	if got := LastLine("x\n"+strings.Repeat("é", 10), 5); got != "éééé…" {
		t.Errorf("LastLine = %q", got)
	}
	if got := Runes("日本語", 2); got != "日…" {
		t.Errorf("Runes = %q", got)
	}
	if got := Runes("日本語", 3); got != "日本語" {
		t.Errorf("Runes = %q", got)
	}
	if got := Quote("aé\n", 2); got != `"a"…` {
		t.Errorf("Quote = %q", got)
	}
	if got := Quote("a\n", 5); got != `"a\n"` {
		t.Errorf("Quote = %q", got)
	}
}
