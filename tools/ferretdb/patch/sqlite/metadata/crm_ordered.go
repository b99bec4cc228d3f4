// Added to FerretDB v1.24.2's internal/backends/sqlite/metadata by tools/ferretdb/build.sh
// (this CRM's local build; production runs MongoDB and needs none of it).
//
// "Ordered" indexes: for the first key of every index, when it is a top-level field,
// an extra SQLite index on the field's value as an SQL value, `_ferretdb_sjson->>'f'`:
// strings are TEXT (compared by code point, as MongoDB does), numbers INTEGER or REAL
// (compared by value across int/long/double), dates INTEGER milliseconds (sjson's
// encoding of a datetime), booleans 1/0, ObjectIds TEXT hex, arrays and documents TEXT
// JSON, null and missing NULL. FerretDB's own index on `_ferretdb_sjson->"f"` holds the
// JSON text of the value ('"abc"', '10'), which orders neither numbers nor strings
// correctly, so it cannot serve range conditions; it stays untouched (it enforces
// uniqueness, and `_id` lookups use it). crm_pushdown.go (package sqlite) writes
// conditions on CrmOrderedColumn, the very expression indexed here, so SQLite can use it.
//
// The ordered indexes are created with the index they follow, dropped with it, and made
// at start-up for the collections of existing databases (CREATE INDEX IF NOT EXISTS), so
// data written by a stock or older build gets them the first time this build opens it.

package metadata

import (
	"context"
	"fmt"
	"regexp"
	"slices"

	"github.com/FerretDB/FerretDB/internal/backends"
	"github.com/FerretDB/FerretDB/internal/util/fsql"
	"github.com/FerretDB/FerretDB/internal/util/lazyerrors"
)

// crmFieldRe: field names that are safe inside the SQL literal of a `->>` label. Not
// dots, brackets or '$': SQLite reads the label 'a.b' as the path $.a.b.
var crmFieldRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// CrmPushableField reports whether conditions on the top-level field can be written in SQL.
func CrmPushableField(field string) bool {
	return crmFieldRe.MatchString(field)
}

// CrmOrderedColumn is the SQL value of a top-level field (see the file comment).
// The field must satisfy CrmPushableField.
func CrmOrderedColumn(field string) string {
	return DefaultColumn + "->>'" + field + "'"
}

// crmOrderedIndexName never collides with FerretDB's "<table>_<index>" names (tables
// never start with the reserved prefix).
func crmOrderedIndexName(table, field string) string {
	return backends.ReservedPrefix + "ord_" + table + "_" + field
}

// crmOrderedFields lists the fields that get an ordered index: the leading key of each
// index, if top-level (compound indexes serve their first field; SQLite could use
// further columns only for plain equalities, and ours are ORs, see crm_pushdown.go).
func crmOrderedFields(c *Collection) []string {
	var fields []string

	for _, index := range c.Settings.Indexes {
		if len(index.Key) == 0 {
			continue
		}

		f := index.Key[0].Field
		if !CrmPushableField(f) || slices.Contains(fields, f) {
			continue
		}

		fields = append(fields, f)
	}

	return fields
}

// crmEnsureOrderedIndexes creates the missing ordered indexes of the collection.
func crmEnsureOrderedIndexes(ctx context.Context, db *fsql.DB, c *Collection) error {
	for _, f := range crmOrderedFields(c) {
		q := fmt.Sprintf(
			"CREATE INDEX IF NOT EXISTS %q ON %q (%s)",
			crmOrderedIndexName(c.TableName, f), c.TableName, CrmOrderedColumn(f),
		)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return lazyerrors.Error(err)
		}
	}

	return nil
}

// crmDropOrderedIndexes drops the ordered indexes no remaining index needs;
// c holds the indexes left, dropped the names of the indexes just dropped.
func crmDropOrderedIndexes(ctx context.Context, db *fsql.DB, c *Collection, dropped []IndexInfo) error {
	keep := crmOrderedFields(c)

	for _, index := range dropped {
		if len(index.Key) == 0 {
			continue
		}

		f := index.Key[0].Field
		if !CrmPushableField(f) || slices.Contains(keep, f) {
			continue
		}

		q := fmt.Sprintf("DROP INDEX IF EXISTS %q", crmOrderedIndexName(c.TableName, f))
		if _, err := db.ExecContext(ctx, q); err != nil {
			return lazyerrors.Error(err)
		}
	}

	return nil
}

// crmEnsureAllOrderedIndexes runs crmEnsureOrderedIndexes for every collection of a database
// opened at start-up.
func crmEnsureAllOrderedIndexes(ctx context.Context, db *fsql.DB, colls map[string]*Collection) error {
	for _, c := range colls {
		if err := crmEnsureOrderedIndexes(ctx, db, c); err != nil {
			return lazyerrors.Errorf("ordered indexes of %q: %w", c.Name, err)
		}
	}

	return nil
}
