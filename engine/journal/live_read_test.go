package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// A rotation between the listing of the files and their opening moves the
// names: the reader notices and lists again.
func TestReadListsAgainAfterARotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	write := func(name string, from, to int) {
		var b strings.Builder
		for i := from; i < to; i++ {
			line, err := Marshal(cycle(i, "out"))
			if err != nil {
				t.Fatal(err)
			}
			b.Write(line)
		}
		if err := os.WriteFile(name, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path+".1", 0, 3)
	write(path, 3, 6)
	files, names, err := openAll(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(files)
	if !opened(path, names, files) {
		t.Fatal("nothing moved, yet the files read as moved")
	}
	// The daemon rotates: path.1 -> path.2, path -> path.1, a new path.
	if err := os.Rename(path+".1", path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(path, 6, 7)
	if opened(path, names, files) {
		t.Fatal("a rotation moved every name, yet the opened files read as current")
	}
	var got []int
	if _, err := Scan(path, func(r engine.Record, _ Pos) error {
		got = append(got, int(r.Time.Sub(t0)/time.Second))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6}; !reflect.DeepEqual(got, want) {
		t.Fatalf("read cycles %v, want %v", got, want)
	}
}

// Reads of a journal that a writer rotates (and compresses, and trims)
// meanwhile each see a contiguous run of records: none skipped, none twice;
// or say that it kept rotating.
func TestReadWhileTheJournalRotates(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	j, err := Open(path, Options{MaxBytes: 1500, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(cycle(0, "out")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := j.Append(cycle(i, "out")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
		j.Close()
	}()
	rotating := 0
	for n := 0; n < 300; n++ {
		last, lastPos := -1, Pos{}
		if _, err := Scan(path, func(r engine.Record, p Pos) error {
			i := int(r.Time.Sub(t0) / time.Second)
			if last >= 0 && i != last+1 {
				return fmt.Errorf("cycle %d at %s after cycle %d at %s", i, p, last, lastPos)
			}
			last, lastPos = i, p
			return nil
		}); errors.Is(err, ErrRotating) {
			rotating++ // said so: the caller tries again
		} else if err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
	}
	t.Logf("%d of 300 reads gave up on a journal rotating every 10 records", rotating)
	if rotating > 150 {
		t.Errorf("%d of 300 reads gave up", rotating)
	}
}
