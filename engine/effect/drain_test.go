package effect

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// What a command wrote before the drain deadline is read even when the
// reader comes after it (a stalled host): the deadline ends the waiting,
// not the output already in the pipe.
func TestReadReadyTakesWhatThePipeHolds(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close() // held open, as by a descendant: nothing may wait for its end
	if _, err := w.Write([]byte("disk 97% full\n")); err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(-time.Second))
	var late bytes.Buffer
	if n, _ := io.Copy(&late, r); n != 0 {
		t.Fatalf("a read past its deadline got %d bytes; this test no longer shows the loss it guards against", n)
	}
	var got bytes.Buffer
	done := make(chan struct{})
	go func() { readReady(r, &got, 1<<20); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("readReady waited on a pipe whose writer is still open")
	}
	if got.String() != "disk 97% full\n" {
		t.Fatalf("got %q", got.String())
	}
}

// readReady stops at its budget when a writer keeps the pipe full.
func TestReadReadyIsBounded(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	chunk := []byte(strings.Repeat("x", 4096))
	if _, err := w.Write(chunk); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}()
	var got bytes.Buffer
	readReady(r, &got, 100<<10)
	if got.Len() > 100<<10+32<<10 || got.Len() == 0 {
		t.Fatalf("read %d bytes from an endless writer, want (0, %d]", got.Len(), 100<<10+32<<10)
	}
}
