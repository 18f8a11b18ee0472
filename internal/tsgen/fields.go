package tsgen

import (
	"go/types"
	"reflect"
	"sort"
	"strings"
	"unicode"
)

// jsonField is one key encoding/json writes for a struct: what Go's
// encoding/json computes in its typeFields, on go/types instead of reflect.
type jsonField struct {
	name      string
	tagged    bool
	index     []int
	v         *types.Var // the Go field
	typ       types.Type // its type, a pointer followed for the "string" option check
	omitEmpty bool
	omitZero  bool
	quoted    bool // the ",string" option applies
	// viaPointer: the field is promoted through an embedded pointer, so it
	// is absent when that pointer is nil.
	viaPointer bool
}

// jsonFields returns the keys encoding/json writes for st, in the order it
// writes them, with the same rules: json tags and "-", unexported fields
// skipped, fields of untagged embedded structs (and pointers to structs)
// promoted, and of several fields with one name at the shallowest depth the
// tagged one wins, or none when that is still ambiguous.
func jsonFields(st *types.Struct) []jsonField {
	type todo struct {
		st         *types.Struct
		index      []int
		viaPointer bool
	}
	var current []todo
	next := []todo{{st: st}}
	var count, nextCount map[*types.Struct]int
	visited := map[*types.Struct]bool{}
	var fields []jsonField

	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[*types.Struct]int{}
		for _, f := range current {
			if visited[f.st] {
				continue
			}
			visited[f.st] = true
			for i := 0; i < f.st.NumFields(); i++ {
				sf := f.st.Field(i)
				if sf.Embedded() {
					t := sf.Type()
					if p, ok := types.Unalias(t).(*types.Pointer); ok {
						t = p.Elem()
					}
					if !sf.Exported() && !isStruct(t) {
						continue // embedded fields of unexported non-struct types
					}
				} else if !sf.Exported() {
					continue
				}
				tag := reflect.StructTag(f.st.Tag(i)).Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTag(name) {
					name = ""
				}
				index := append(append([]int(nil), f.index...), i)
				ft := sf.Type()
				ptr := false
				if p, ok := types.Unalias(ft).(*types.Pointer); ok { // an unnamed pointer
					ft = p.Elem()
					ptr = true
				}
				quoted := false
				if hasOpt(opts, "string") {
					if b, ok := ft.Underlying().(*types.Basic); ok && b.Info()&(types.IsBoolean|types.IsInteger|types.IsFloat|types.IsString) != 0 {
						quoted = true
					}
				}
				if name != "" || !sf.Embedded() || !isStruct(ft) {
					tagged := name != ""
					if name == "" {
						name = sf.Name()
					}
					jf := jsonField{name: name, tagged: tagged, index: index, v: sf, typ: ft,
						omitEmpty: hasOpt(opts, "omitempty"), omitZero: hasOpt(opts, "omitzero"),
						quoted: quoted, viaPointer: f.viaPointer}
					fields = append(fields, jf)
					if count[f.st] > 1 {
						// Two copies at the same level cancel each other out
						// (annihilated by the dominance rule below).
						fields = append(fields, fields[len(fields)-1])
					}
					continue
				}
				s := ft.Underlying().(*types.Struct)
				nextCount[s]++
				if nextCount[s] == 1 {
					next = append(next, todo{st: s, index: index, viaPointer: f.viaPointer || ptr})
				}
			}
		}
	}

	sort.SliceStable(fields, func(i, j int) bool {
		x, y := fields[i], fields[j]
		if x.name != y.name {
			return x.name < y.name
		}
		if len(x.index) != len(y.index) {
			return len(x.index) < len(y.index)
		}
		if x.tagged != y.tagged {
			return x.tagged
		}
		return lessIndex(x.index, y.index)
	})
	out := fields[:0]
	for advance, i := 0, 0; i < len(fields); i += advance {
		fi := fields[i]
		for advance = 1; i+advance < len(fields); advance++ {
			if fields[i+advance].name != fi.name {
				break
			}
		}
		if advance == 1 {
			out = append(out, fi)
			continue
		}
		if dominant, ok := dominantField(fields[i : i+advance]); ok {
			out = append(out, dominant)
		}
	}
	fields = out
	sort.Slice(fields, func(i, j int) bool { return lessIndex(fields[i].index, fields[j].index) })
	return fields
}

// dominantField picks the field that wins among fields of one name, sorted
// by depth and then tagged first.
func dominantField(fields []jsonField) (jsonField, bool) {
	if len(fields) > 1 && len(fields[0].index) == len(fields[1].index) && fields[0].tagged == fields[1].tagged {
		return jsonField{}, false
	}
	return fields[0], true
}

func lessIndex(a, b []int) bool {
	for k, xik := range a {
		if k >= len(b) {
			return false
		}
		if xik != b[k] {
			return xik < b[k]
		}
	}
	return len(a) < len(b)
}

func isStruct(t types.Type) bool {
	_, ok := t.Underlying().(*types.Struct)
	return ok
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// validTag is encoding/json's rule for a usable key in a tag.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
