// Added to FerretDB v1.24.2's internal/backends/sqlite by tools/ferretdb/build.sh (this
// CRM's local build; production runs MongoDB and needs none of it).
//
// Filter pushdown. Stock FerretDB's SQLite backend turns only a filter that is exactly
// {_id: <string|ObjectId>} into SQL; any other filter reads and decodes every document
// of the collection and filters them in Go. crmWhere turns the conditions it can express
// into a WHERE clause on the ordered column of each field (metadata/crm_ordered.go), so
// SQLite can use the ordered index of an indexed field (unindexed fields are still
// checked in SQL, which is cheaper than decoding the document in Go).
//
// The backend contract allows it: the handler still applies the whole filter to what
// the query returns, so the clause only has to select a SUPERSET of the documents that
// match, never fewer. What it expresses, per top-level field f (names matching
// metadata.CrmPushableField; dotted paths are never pushed):
//
//   - {f: v} and {f: {$eq: v}}, for v a string, ObjectId, integer, double, boolean or
//     datetime; {f: {$in: [v, ...]}} when every element is one of those;
//   - {f: {$gt|$gte|$lt|$lte: v}} for v a string, ObjectId, number or datetime; several
//     operators of one field are ANDed, other operators ($ne, $exists, ...) are left to Go;
//   - {f: /^prefix/} and {f: {$regex: "^prefix"}} without options: the range of strings
//     starting with the pattern's literal prefix (as MongoDB uses an index for it);
//   - conditions inside a top-level $and, and any number of fields (ANDed).
//
// MongoDB's rules that shape the SQL:
//
//   - an equality or range on f also matches a document where f is an array with a
//     matching element; the ordered column of an array is its JSON text, so every
//     condition on a field other than _id is ORed with `col >= '[' AND col < '\'` (the
//     JSON texts of arrays, and strings starting with '['), an index range too;
//   - numbers compare by value across int, long and double (SQLite compares INTEGER and
//     REAL by value); a double, or an integer beyond 2^53, is widened by a relative
//     1e-12, because the column holds SQLite's parse of Go's shortest decimal rendering;
//   - range operators only match values of the operand's type: SQLite orders
//     NULL < INTEGER/REAL < TEXT, so a one-sided range on a number or date is closed
//     with `col < ''` and one on a string or ObjectId with `col >= ''`; booleans (1/0)
//     and dates (milliseconds) share the numbers' range, a superset the handler filters
//     out;
//   - strings compare by code point: SQLite's BINARY collation compares UTF-8 bytes,
//     which is code point order;
//   - a datetime is stored as Unix milliseconds (sjson), so its operand is UnixMilli;
//   - {f: null} also matches missing fields, regexes, documents and arrays as operands
//     need Go semantics: not pushed (no condition for that field).
//
// `_id` is never an array, so its conditions have no array branch; an equality on a
// string or ObjectId `_id` uses FerretDB's own unique index on `_ferretdb_sjson->"_id"`
// (metadata.IDColumn) with sjson's encoding of the value, as stock FerretDB does.
//
// Sort pushdown ({_id: 1} or {_id: -1}): see crmOrderBy and the handler's crm_sort.go.

package sqlite

import (
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/handler/sjson"
	"github.com/FerretDB/FerretDB/internal/types"
	"github.com/FerretDB/FerretDB/internal/util/must"
)

// crmArrayRange selects the rows where col is the JSON text of an array (or a string
// starting with '['): '\' is the character after '['.
func crmArrayRange(col string) string {
	return "(" + col + " >= '[' AND " + col + " < '\\')"
}

// crmExactInt is the largest magnitude below which every integer is an exact double.
const crmExactInt = 1 << 53

// crmQuery is the SQL form of a filter (and sort) being built.
type crmQuery struct {
	conds  []string
	args   []any
	sortID bool // ORDER BY the ordered _id column: only _id's conditions may use an index
}

// crmWhere returns " WHERE ..." and its arguments for the filter, or "" and nil.
// With sortID, conditions on other fields are written so that SQLite cannot use their
// indexes (unary +): the ordered _id index then serves both the range and the order,
// and the handler's limit stops the scan early.
func crmWhere(filter *types.Document, sortID bool) (string, []any) {
	q := crmQuery{sortID: sortID}
	q.addFilter(filter, 0)

	if len(q.conds) == 0 {
		return "", nil
	}

	return " WHERE " + strings.Join(q.conds, " AND "), q.args
}

// crmOrderBy returns the ORDER BY clause for the sort pushed down to the backend:
// stock FerretDB's {$natural: ±1}, or {_id: ±1} (crm_sort.go in the handler decides
// when that order is MongoDB's).
func crmOrderBy(sort *types.Document) string {
	if sort.Len() != 1 || sort.Keys()[0] != "_id" {
		return prepareOrderByClause(sort)
	}

	order := ""
	if must.NotFail(sort.Get("_id")).(int64) == -1 {
		order = " DESC"
	}

	return " ORDER BY " + metadata.CrmOrderedColumn("_id") + order
}

func (q *crmQuery) addFilter(filter *types.Document, depth int) {
	if filter == nil || depth > 4 {
		return
	}

	keys, values := filter.Keys(), filter.Values()

	for i, k := range keys {
		switch {
		case k == "$and":
			arr, ok := values[i].(*types.Array)
			if !ok {
				continue
			}

			for j := 0; j < arr.Len(); j++ {
				if sub, ok := must.NotFail(arr.Get(j)).(*types.Document); ok {
					q.addFilter(sub, depth+1)
				}
			}

		case metadata.CrmPushableField(k):
			q.addField(k, values[i])
		}
	}
}

// addField adds the condition of one top-level field, if it can express any of it.
func (q *crmQuery) addField(field string, v any) {
	col := metadata.CrmOrderedColumn(field)
	isID := field == "_id"

	if q.sortID && !isID {
		col = "+(" + col + ")" // same value, but no index of the field matches it
	}

	var parts []string
	var args []any

	add := func(cond string, a []any) {
		if cond != "" {
			parts = append(parts, cond)
			args = append(args, a...)
		}
	}

	// the bounds of the field's ranges, to close a one-sided range at its type's end
	var lower, upper, numeric, textual bool

	addRange := func(op string, operand any) {
		cond, a, isNumeric := crmRange(col, op, operand)
		if cond == "" {
			return
		}

		add(cond, a)

		if op == "$gt" || op == "$gte" {
			lower = true
		} else {
			upper = true
		}

		numeric = numeric || isNumeric
		textual = textual || !isNumeric
	}

	ops, isDoc := v.(*types.Document)
	if !isDoc {
		// {_id: <string|ObjectId>}: FerretDB's unique _id index, as stock FerretDB queries it
		switch v.(type) {
		case string, types.ObjectID:
			if isID && !q.sortID {
				q.conds = append(q.conds, metadata.IDColumn+" = ?")
				q.args = append(q.args, string(must.NotFail(sjson.MarshalSingleValue(v))))

				return
			}
		}

		if re, ok := v.(types.Regex); ok {
			add(crmPrefix(col, re))
		} else {
			add(crmEq(col, v))
		}
	} else {
		opKeys, opValues := ops.Keys(), ops.Values()

		for i, op := range opKeys {
			if !strings.HasPrefix(op, "$") {
				return // {f: {a: 1}}: equality with a whole document
			}

			switch op {
			case "$eq":
				add(crmEq(col, opValues[i]))
			case "$in":
				add(crmIn(col, opValues[i]))
			case "$gt", "$gte", "$lt", "$lte":
				addRange(op, opValues[i])
			case "$regex":
				if opts, _ := ops.Get("$options"); opts == nil || opts == "" {
					add(crmPrefix(col, opValues[i]))
				}
			}
		}
	}

	// MongoDB's ranges only match their operand's type (SQLite orders NULL < numbers <
	// TEXT): a range on numbers or dates with no upper bound ends before the texts, one on
	// strings with no lower bound starts after the numbers. Only when one-sided: a second
	// upper bound would keep SQLite from using the operand's ({$gte: a, $lt: b} must
	// scan from a to b, not from a to the end of the numbers).
	switch {
	case numeric && !textual && lower && !upper:
		parts = append(parts, col+" < ''")
	case textual && !numeric && upper && !lower:
		parts = append(parts, col+" >= ''")
	}

	if len(parts) == 0 {
		return
	}

	cond := strings.Join(parts, " AND ")

	if !isID {
		cond = "((" + cond + ") OR " + crmArrayRange(col) + ")"
	}

	q.conds = append(q.conds, cond)
	q.args = append(q.args, args...)
}

// crmScalar returns the SQL value of v in the ordered column, whether that value is
// exact (false for doubles and huge integers, compared within crmWiden), and whether
// v can be pushed at all.
func crmScalar(v any) (val any, exact, ok bool) {
	switch v := v.(type) {
	case string:
		return v, true, true
	case types.ObjectID:
		return hex.EncodeToString(v[:]), true, true // sjson stores an ObjectId as its hex
	case bool:
		if v {
			return int64(1), true, true
		}
		return int64(0), true, true
	case time.Time:
		return v.UnixMilli(), true, true
	case int32:
		return int64(v), true, true
	case int64:
		if v > -crmExactInt && v < crmExactInt {
			return v, true, true
		}
		return float64(v), false, true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false, false
		}
		if v == math.Trunc(v) && math.Abs(v) < crmExactInt {
			return int64(v), true, true
		}
		return v, false, true
	default:
		return nil, false, false
	}
}

// crmWiden returns the bounds around a non-exact number.
func crmWiden(f float64) (float64, float64) {
	d := math.Abs(f) * 1e-12
	return f - d, f + d
}

func crmEq(col string, v any) (string, []any) {
	val, exact, ok := crmScalar(v)
	switch {
	case !ok:
		return "", nil
	case exact:
		return col + " = ?", []any{val}
	default:
		lo, hi := crmWiden(val.(float64))
		return col + " BETWEEN ? AND ?", []any{lo, hi}
	}
}

func crmIn(col string, v any) (string, []any) {
	arr, ok := v.(*types.Array)
	if !ok || arr.Len() == 0 {
		return "", nil
	}

	var exact []any
	var terms []string
	var args []any

	for i := 0; i < arr.Len(); i++ {
		val, isExact, ok := crmScalar(must.NotFail(arr.Get(i)))
		if !ok {
			return "", nil // one element needs Go semantics (null, regex, array...): push nothing
		}

		if isExact {
			exact = append(exact, val)
			continue
		}

		lo, hi := crmWiden(val.(float64))
		terms = append(terms, col+" BETWEEN ? AND ?")
		args = append(args, lo, hi)
	}

	if len(exact) > 0 {
		terms = append([]string{col + " IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(exact)), ", ") + ")"}, terms...)
		args = append(exact, args...)
	}

	return "(" + strings.Join(terms, " OR ") + ")", args
}

func crmRange(col, op string, v any) (cond string, args []any, numeric bool) {
	switch v.(type) {
	case string, types.ObjectID:
	case int32, int64, float64, time.Time:
		numeric = true
	default:
		return "", nil, false // booleans, null, regexes, ...: left to Go
	}

	val, exact, ok := crmScalar(v)
	if !ok {
		return "", nil, false
	}

	cmp := map[string]string{"$gt": " > ?", "$gte": " >= ?", "$lt": " < ?", "$lte": " <= ?"}[op]

	if !exact {
		lo, hi := crmWiden(val.(float64))
		if op == "$gt" || op == "$gte" {
			cmp, val = " >= ?", lo
		} else {
			cmp, val = " <= ?", hi
		}
	}

	return col + cmp, []any{val}, numeric
}

// crmSortsByID reports whether the query is sorted by _id (see crmOrderBy).
func crmSortsByID(sort *types.Document) bool {
	return sort.Len() == 1 && sort.Keys()[0] == "_id"
}

// crmRegexMeta: characters that end the literal prefix of a pattern.
const crmRegexMeta = `\^$.|?*+()[]{}`

// crmPrefix returns the range of strings that start with the literal prefix of an
// anchored pattern (/^abc/, /^abc.*x/), or nothing. Only strings match a regex.
func crmPrefix(col string, v any) (string, []any) {
	var pattern string

	switch v := v.(type) {
	case types.Regex:
		if v.Options != "" {
			return "", nil // i, m, x change what matches
		}

		pattern = v.Pattern
	case string:
		pattern = v
	default:
		return "", nil
	}

	if !strings.HasPrefix(pattern, "^") || strings.Contains(pattern, "|") {
		return "", nil
	}

	rest := []rune(pattern[1:])

	n := 0
	for n < len(rest) && !strings.ContainsRune(crmRegexMeta, rest[n]) {
		n++
	}

	// a quantifier that allows zero repetitions makes the character before it optional
	if n < len(rest) && strings.ContainsRune("?*{", rest[n]) {
		n--
	}

	if n <= 0 {
		return "", nil
	}

	prefix := rest[:n]

	// the smallest string greater than every string starting with prefix
	upper := slices.Clone(prefix)
	for len(upper) > 0 {
		last := upper[len(upper)-1]
		if last < unicode.MaxRune {
			last++
			if last >= 0xD800 && last <= 0xDFFF { // surrogates are not in UTF-8 strings
				last = 0xE000
			}

			upper[len(upper)-1] = last

			break
		}

		upper = upper[:len(upper)-1]
	}

	if len(upper) == 0 {
		return col + " >= ?", []any{string(prefix)}
	}

	return col + " >= ? AND " + col + " < ?", []any{string(prefix), string(upper)}
}
