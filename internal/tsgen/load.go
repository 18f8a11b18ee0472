package tsgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// listed is what `go list -json` says of one package.
type listed struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	Export     string
	ImportMap  map[string]string
	DepOnly    bool
	Error      *struct{ Err string }
}

// loaded is the contract package, type-checked from source (for its doc
// comments and MessageType bodies) against the compiled export data of its
// dependencies.
type loaded struct {
	fset  *token.FileSet
	files []*ast.File
	pkg   *types.Package
	info  *types.Info
	path  string // import path
}

// load runs `go list -export -deps` on pattern in dir, which builds the
// package and its dependencies and names their export data, then parses and
// type-checks the package itself. This is what golang.org/x/tools/go/packages
// does for this case, without adding a dependency to the module.
func load(pattern, dir string) (*loaded, error) {
	goBin, err := goCommand()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(goBin, "list", "-e", "-export", "-deps",
		"-json=ImportPath,Name,Dir,GoFiles,CgoFiles,Export,ImportMap,DepOnly,Error", "--", pattern)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go list %s: %v: %s", pattern, err, strings.TrimSpace(stderr.String()))
	}
	exports := make(map[string]string)
	var target *listed
	dec := json.NewDecoder(&stdout)
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list %s: %v", pattern, err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("package %s: %s", p.ImportPath, p.Error.Err)
		}
		exports[p.ImportPath] = p.Export
		if !p.DepOnly {
			if target != nil {
				return nil, fmt.Errorf("%s names more than one package (%s, %s); name one", pattern, target.ImportPath, p.ImportPath)
			}
			p := p
			target = &p
		}
	}
	if target == nil {
		return nil, fmt.Errorf("%s: no package", pattern)
	}
	if len(target.CgoFiles) > 0 {
		return nil, fmt.Errorf("package %s uses cgo; a contract package must not", target.ImportPath)
	}

	l := &loaded{fset: token.NewFileSet(), path: target.ImportPath}
	for _, name := range target.GoFiles {
		f, err := parser.ParseFile(l.fset, filepath.Join(target.Dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		l.files = append(l.files, f)
	}
	lookup := func(path string) (io.ReadCloser, error) {
		if p, ok := target.ImportMap[path]; ok {
			path = p
		}
		file, ok := exports[path]
		if !ok || file == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	}
	conf := types.Config{Importer: importer.ForCompiler(l.fset, "gc", lookup)}
	l.info = &types.Info{
		Types: make(map[ast.Expr]types.TypeAndValue),
		Defs:  make(map[*ast.Ident]types.Object),
		Uses:  make(map[*ast.Ident]types.Object),
	}
	l.pkg, err = conf.Check(target.ImportPath, l.fset, l.files, l.info)
	if err != nil {
		return nil, fmt.Errorf("type-checking %s: %v", target.ImportPath, err)
	}
	return l, nil
}

// goCommand finds the go command: on PATH, else in the GOROOT this program
// was built with.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("the go command is not on PATH")
	}
	return p, nil
}

// docs maps the positions of the names of the package's type declarations
// and struct fields to their doc comments.
func (l *loaded) docs() map[token.Pos]string {
	m := make(map[token.Pos]string)
	for _, f := range l.files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GenDecl:
				if n.Tok != token.TYPE {
					return true
				}
				for _, spec := range n.Specs {
					ts := spec.(*ast.TypeSpec)
					doc := ts.Doc
					if doc == nil && len(n.Specs) == 1 {
						doc = n.Doc
					}
					if doc != nil {
						m[ts.Name.Pos()] = doc.Text()
					}
				}
			case *ast.Field:
				doc := n.Doc
				if doc == nil {
					doc = n.Comment
				}
				if doc == nil {
					return true
				}
				for _, name := range n.Names {
					m[name.Pos()] = doc.Text()
				}
				if len(n.Names) == 0 { // an embedded field: its position is the type's
					m[embeddedPos(n.Type)] = doc.Text()
				}
			}
			return true
		})
	}
	return m
}

// embeddedPos returns where the name of an embedded field's type is, which
// is the position go/types gives the field.
func embeddedPos(e ast.Expr) token.Pos {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.SelectorExpr:
			return x.Sel.Pos()
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		default:
			return e.Pos()
		}
	}
}

// funcDecl returns the declaration of method fn in the package, or nil.
func (l *loaded) funcDecl(fn *types.Func) *ast.FuncDecl {
	for _, f := range l.files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Pos() == fn.Pos() {
				return fd
			}
		}
	}
	return nil
}
