package netmsg_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The contract is checked by the compiler: the programs under
// testdata/contract/bad_* misuse it and must not compile, each failing on
// exactly the lines that carry a "// want `regexp`" comment, with a message
// matching the regexp; testdata/contract/good uses it correctly and must
// compile.
//
// The programs live inside the module (testdata is skipped by ./... patterns,
// so `go build ./...` and `go vet ./...` never see them) and are built by
// path with the go command.
func TestContractsAreCheckedByTheCompiler(t *testing.T) {
	t.Parallel()
	goCmd := goTool(t)
	dirs, err := filepath.Glob(filepath.Join("testdata", "contract", "*"))
	require.NoError(t, err)
	var bad []string
	hasGood := false
	for _, d := range dirs {
		switch name := filepath.Base(d); {
		case name == "good":
			hasGood = true
		case strings.HasPrefix(name, "bad_"):
			bad = append(bad, d)
		}
	}
	require.True(t, hasGood, "testdata/contract/good is missing")
	require.GreaterOrEqual(t, len(bad), 2, "testdata/contract/bad_* programs are missing")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("good", func(t *testing.T) {
		out, err := goBuild(ctx, goCmd, "-o", filepath.Join(t.TempDir(), "good"+exeSuffix()), "./testdata/contract/good")
		require.NoError(t, err, "testdata/contract/good must compile:\n%s", out)
	})

	// One go build for all bad programs: the go command type-checks each
	// package and reports the errors of every one that fails.
	args := []string{}
	for _, d := range bad {
		args = append(args, "./"+filepath.ToSlash(d))
	}
	out, err := goBuild(ctx, goCmd, args...)
	require.Error(t, err, "the bad contract programs compiled:\n%s", out)
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "go build did not run: %v\n%s", err, out)
	errs := parseCompileErrors(out)

	for _, d := range bad {
		t.Run(filepath.Base(d), func(t *testing.T) {
			file := filepath.ToSlash(filepath.Join(d, "main.go"))
			wants := readWants(t, file)
			require.NotEmpty(t, wants, "%s has no // want comment", file)
			got := errs[file]
			require.NotEmpty(t, got, "%s compiled without errors; go build said:\n%s", file, out)
			for line, re := range wants {
				msgs := got[line]
				if assert.NotEmpty(t, msgs, "%s:%d: no compile error on the marked line; errors: %v", file, line, got) {
					ok := false
					for _, m := range msgs {
						ok = ok || re.MatchString(m)
					}
					assert.True(t, ok, "%s:%d: want an error matching %q, got %q", file, line, re, msgs)
				}
			}
			for line, msgs := range got {
				_, marked := wants[line]
				assert.True(t, marked, "%s:%d: unexpected compile error %q", file, line, msgs)
			}
		})
	}
}

// goTool returns the go command: the one on PATH, else the one of the
// toolchain that built this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go"+exeSuffix())
	_, err := os.Stat(p)
	require.NoError(t, err, "no go command on PATH or in GOROOT")
	return p
}

func exeSuffix() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

func goBuild(ctx context.Context, goCmd string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"build"}, args...)...)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=on")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// compileError matches the first line of a compiler error:
// "testdata/contract/bad_call/main.go:25:14: cannot use ...". Its detail
// follows on lines indented with a tab.
var compileError = regexp.MustCompile(`^(?:\./)?(testdata/contract/[^:]+\.go):(\d+):(?:\d+:)? (.*)$`)

// parseCompileErrors maps file → line → messages (detail lines joined on).
func parseCompileErrors(out string) map[string]map[int][]string {
	errs := make(map[string]map[int][]string)
	var file string
	var line, idx int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		text := strings.ReplaceAll(sc.Text(), `\`, "/")
		if m := compileError.FindStringSubmatch(text); m != nil {
			file = m[1]
			line, _ = strconv.Atoi(m[2])
			if errs[file] == nil {
				errs[file] = make(map[int][]string)
			}
			errs[file][line] = append(errs[file][line], m[3])
			idx = len(errs[file][line]) - 1
			continue
		}
		if file != "" && strings.HasPrefix(text, "\t") {
			errs[file][line][idx] += " " + strings.TrimSpace(text)
			continue
		}
		file = ""
	}
	return errs
}

var wantComment = regexp.MustCompile("// want `([^`]*)`")

// readWants returns the line → regexp of a file's // want comments.
func readWants(t *testing.T, file string) map[int]*regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(file))
	require.NoError(t, err)
	wants := make(map[int]*regexp.Regexp)
	for i, l := range strings.Split(string(data), "\n") {
		if m := wantComment.FindStringSubmatch(l); m != nil {
			wants[i+1] = regexp.MustCompile(m[1])
		}
	}
	return wants
}
