// Added to FerretDB v1.24.2's internal/backends/sqlite by tools/ferretdb/build.sh, which
// runs it before building: the pushed-down SQL must select a superset of the documents
// FerretDB's own filter matches (the handler filters the rest out), for random documents
// and filters, in SQLite, through FerretDB's own document encoding. It also checks that
// the shapes the CRM relies on use an index.

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/handler/common"
	"github.com/FerretDB/FerretDB/internal/handler/sjson"
	"github.com/FerretDB/FerretDB/internal/types"
	"github.com/FerretDB/FerretDB/internal/util/must"
)

var crmTestTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// crmScalars: values of every type the pushdown handles, and some it must leave alone,
// with neighbours across types and awkward encodings.
func crmScalars() []any {
	oid := types.ObjectID{0x65, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xa, 0xb}
	oid2 := types.ObjectID{0x65, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xa, 0xc}

	return []any{
		int32(0), int32(1), int32(-1), int32(5), int32(10), int64(5), int64(1 << 60), int64(-(1 << 60)),
		int64(1<<53 + 1), float64(5), float64(5.5), float64(0.1), float64(0.30000000000000004), math.Copysign(0, -1),
		float64(1 << 60), float64(1e21), float64(-1e-7), float64(1e300), math.SmallestNonzeroFloat64,
		"", "a", "ab", "ab!", "ab ", "abc", "b", "B", "5", "[x", "[", "\\", "{", "a\"b", "a<b&c>", "é", "\u2028",
		"con_01JD8ZQ", "con_01JD8ZR", "a\x00b", "\x01", "\U0001F600", "z", "~",
		true, false,
		crmTestTime, crmTestTime.Add(time.Millisecond), crmTestTime.Add(-time.Hour), time.UnixMilli(-1000).UTC(),
		oid, oid2,
		types.Null,
	}
}

func crmRandomValue(r *rand.Rand, scalars []any, depth int) any {
	switch n := r.Intn(10); {
	case n < 7 || depth > 1:
		return scalars[r.Intn(len(scalars))]
	case n < 9:
		arr := types.MakeArray(3)
		for i := r.Intn(4); i > 0; i-- {
			arr.Append(crmRandomValue(r, scalars, depth+1))
		}

		return arr
	default:
		return must.NotFail(types.NewDocument("x", crmRandomValue(r, scalars, depth+1)))
	}
}

func crmRandomFilter(r *rand.Rand, scalars []any, fields []string) *types.Document {
	f := types.MakeDocument(2)

	for i := r.Intn(3) + 1; i > 0; i-- {
		field := fields[r.Intn(len(fields))]
		v := scalars[r.Intn(len(scalars))]

		switch r.Intn(7) {
		case 0, 1:
			f.Set(field, v)
		case 2:
			f.Set(field, must.NotFail(types.NewDocument("$eq", v)))
		case 3:
			ops := []string{"$gt", "$gte", "$lt", "$lte"}
			f.Set(field, must.NotFail(types.NewDocument(ops[r.Intn(4)], v)))
		case 4:
			w := scalars[r.Intn(len(scalars))]
			f.Set(field, must.NotFail(types.NewDocument("$gte", v, "$lt", w)))
		case 5:
			in := must.NotFail(types.NewArray(v, scalars[r.Intn(len(scalars))]))
			f.Set(field, must.NotFail(types.NewDocument("$in", in)))
		default:
			sub := must.NotFail(types.NewDocument(field, must.NotFail(types.NewDocument("$gt", v))))
			f.Set("$and", must.NotFail(types.NewArray(sub)))
		}
	}

	return f
}

func TestCrmPushdownSuperset(t *testing.T) {
	ctx := context.Background()

	db, err := sql.Open("sqlite", "file:crm?mode=memory")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	db.SetMaxOpenConns(1)

	table := "t"
	if _, err = db.ExecContext(ctx, `CREATE TABLE t (_ferretdb_sjson TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	r := rand.New(rand.NewSource(1))
	scalars := crmScalars()
	fields := []string{"_id", "a", "b"}

	type stored struct {
		doc *types.Document
		raw string
	}

	var docs []stored

	for i := 0; i < 400; i++ {
		var id any = fmt.Sprintf("con_%04d", i)

		switch i % 4 {
		case 1:
			id = int32(i)
		case 2:
			id = types.NewObjectID()
		case 3: // _id from the awkward values too, once each
			if i/4 < len(scalars) {
				if _, isNull := scalars[i/4].(types.NullType); !isNull {
					id = scalars[i/4]
				}
			}
		}

		doc := must.NotFail(types.NewDocument("_id", id))

		for _, k := range []string{"a", "b"} {
			if r.Intn(8) > 0 {
				doc.Set(k, crmRandomValue(r, scalars, 0))
			}
		}

		b, err := sjson.Marshal(doc)
		if err != nil {
			continue // not storable by FerretDB either
		}

		// stored and read back as FerretDB does
		doc = must.NotFail(sjson.Unmarshal(b))
		if _, err = db.ExecContext(ctx, `INSERT INTO t VALUES (?)`, string(b)); err != nil {
			t.Fatal(err)
		}

		docs = append(docs, stored{doc, string(b)})
	}

	for _, f := range []string{"_id", "a", "b"} {
		q := fmt.Sprintf(`CREATE INDEX "ord_%s" ON %q (%s)`, f, table, metadata.CrmOrderedColumn(f))
		if _, err = db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	check := func(filter *types.Document, sortID bool) {
		t.Helper()

		where, args := crmWhere(filter, sortID)

		rows, err := db.QueryContext(ctx, `SELECT _ferretdb_sjson FROM t`+where, args...)
		if err != nil {
			t.Fatalf("%s: %s %v: %v", types.FormatAnyValue(filter), where, args, err)
		}

		got := map[string]bool{}

		for rows.Next() {
			var s string
			must.NoError(rows.Scan(&s))
			got[s] = true
		}

		must.NoError(rows.Err())
		rows.Close()

		for _, d := range docs {
			match, err := common.FilterDocument(d.doc, filter)
			if err != nil {
				return // a filter FerretDB rejects
			}

			if match && !got[d.raw] {
				t.Fatalf("pushdown lost a match:\nfilter %s\nSQL    %s %v\ndoc    %s",
					types.FormatAnyValue(filter), where, args, d.raw)
			}
		}
	}

	// every scalar against every stored value, with each operator
	for _, f := range fields {
		for _, v := range scalars {
			check(must.NotFail(types.NewDocument(f, v)), false)

			for _, op := range []string{"$eq", "$gt", "$gte", "$lt", "$lte"} {
				check(must.NotFail(types.NewDocument(f, must.NotFail(types.NewDocument(op, v)))), op == "$lt")
			}
		}
	}

	// anchored patterns: prefix ranges, and the ones that must not become a range
	for _, f := range []string{"_id", "a"} {
		for _, v := range scalars {
			if str, ok := v.(string); ok {
				for _, p := range []string{"^" + str, "^" + str + ".*", "^" + str + "?", "^" + str + "*x", "^" + str + "|b"} {
					check(must.NotFail(types.NewDocument(f, types.Regex{Pattern: p})), false)
					check(must.NotFail(types.NewDocument(f, must.NotFail(types.NewDocument("$regex", p)))), false)
				}
			}
		}
	}

	for i := 0; i < 1000; i++ {
		check(crmRandomFilter(r, scalars, fields), i%2 == 0)
	}
}

// TestCrmPushdownPlans: the shapes the CRM relies on use an index and read no other rows.
func TestCrmPushdownPlans(t *testing.T) {
	ctx := context.Background()

	db, err := sql.Open("sqlite", "file:crmplans?mode=memory")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	db.SetMaxOpenConns(1)

	for _, q := range []string{
		`CREATE TABLE t (_ferretdb_sjson TEXT NOT NULL)`,
		`CREATE UNIQUE INDEX t_id ON t (` + metadata.IDColumn + `)`,
		`CREATE INDEX ord_id ON t (` + metadata.CrmOrderedColumn("_id") + `)`,
		`CREATE INDEX ord_contact ON t (` + metadata.CrmOrderedColumn("contact_id") + `)`,
		`CREATE INDEX ord_due ON t (` + metadata.CrmOrderedColumn("due_at") + `)`,
		`CREATE INDEX ord_erased ON t (` + metadata.CrmOrderedColumn("erased") + `)`,
	} {
		if _, err = db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	doc := func(pairs ...any) *types.Document { return must.NotFail(types.NewDocument(pairs...)) }

	for _, tc := range []struct {
		filter *types.Document
		sortID bool
		index  string
	}{
		{doc("_id", "con_1"), false, "t_id"},
		{doc("_id", "con_1", "version", int32(3)), false, "t_id"},
		{doc("_id", "con_1", "balance", doc("$gte", int32(1))), false, "t_id"},
		{doc("contact_id", "con_1"), false, "ord_contact"},
		{doc("contact_id", "con_1", "kind", "note"), false, "ord_contact"},
		{doc("due_at", doc("$lt", crmTestTime)), false, "ord_due"},
		{doc("due_at", doc("$gte", crmTestTime, "$lt", crmTestTime.Add(time.Hour))), false, "ord_due"},
		{doc("contact_id", types.Regex{Pattern: "^con_1"}), false, "ord_contact"},
		{doc("_id", doc("$lt", "con_5")), false, "ord_id"},
		{doc("_id", doc("$lt", "con_5"), "erased", false), true, "ord_id"},
	} {
		where, args := crmWhere(tc.filter, tc.sortID)
		q := `EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM t` + where

		if tc.sortID {
			q += crmOrderBy(doc("_id", int64(-1)))
		}

		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			t.Fatal(err)
		}

		var plan []string

		for rows.Next() {
			var id, parent, notused int
			var detail string
			must.NoError(rows.Scan(&id, &parent, &notused, &detail))
			plan = append(plan, detail)
		}

		rows.Close()

		// a two-sided range must not carry a type-closing bound too: SQLite would
		// use one upper bound for the index range and only filter with the other
		if _, err := tc.filter.Get("due_at"); err == nil && strings.Contains(where, " < ?") &&
			strings.Contains(where, "< ''") {
			t.Errorf("%s: %s has more bounds than needed", types.FormatAnyValue(tc.filter), where)
		}

		p := strings.Join(plan, "; ")
		if !strings.Contains(p, "USING INDEX "+tc.index) || strings.Contains(p, "SCAN t") ||
			strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s: plan %q, want index %s, no scan, no sort step", types.FormatAnyValue(tc.filter), p, tc.index)
		}
	}
}
