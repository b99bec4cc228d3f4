// Added to FerretDB v1.24.2's internal/handler by tools/ferretdb/build.sh (this CRM's
// local build; production runs MongoDB and needs none of it).
//
// Sort pushdown for paging by _id. Stock FerretDB sorts in Go: with a sort, find reads
// every document the filter selects, sorts them all and only then applies the limit, so
// `find({_id: {$lt: cursor}}).sort({_id: -1}).limit(20)` decodes half the collection on
// average. When the sort is {_id: 1} or {_id: -1} and the filter's top-level _id
// condition only matches strings (or only ObjectIds) - MongoDB's range and $in operators
// only match values of their operand's type - SQLite's order of the ordered _id column
// (TEXT, by code point, the hex of an ObjectId) is MongoDB's order for every document
// the handler can return. The backend then sorts (crmOrderBy in the sqlite backend, on
// the ordered _id index, no sort step), the handler does not sort again, and its limit
// stops reading after the page. Sorting by _id with any other filter still sorts in Go:
// _id values of several types would not be in MongoDB's order ({_id: {$gt: ""}} pins
// strings for a first page).

package handler

import (
	"github.com/FerretDB/FerretDB/internal/types"
)

// crmIDSortPushdown reports whether sort is {_id: ±1} and filter's _id condition
// matches values of one type only (strings or ObjectIds), through $gt, $gte, $lt,
// $lte and $in.
func crmIDSortPushdown(filter, sort *types.Document) bool {
	if sort.Len() != 1 || sort.Keys()[0] != "_id" || filter == nil {
		return false
	}

	v, err := filter.Get("_id")
	if err != nil {
		return false
	}

	ops, ok := v.(*types.Document)
	if !ok || ops.Len() == 0 {
		return false
	}

	var kind string

	same := func(x any) bool {
		var k string

		switch x.(type) {
		case string:
			k = "string"
		case types.ObjectID:
			k = "objectId"
		default:
			return false
		}

		if kind == "" {
			kind = k
		}

		return kind == k
	}

	keys, values := ops.Keys(), ops.Values()

	for i, op := range keys {
		switch op {
		case "$gt", "$gte", "$lt", "$lte":
			if !same(values[i]) {
				return false
			}

		case "$in":
			arr, ok := values[i].(*types.Array)
			if !ok || arr.Len() == 0 {
				return false
			}

			for j := 0; j < arr.Len(); j++ {
				x, _ := arr.Get(j)
				if !same(x) {
					return false
				}
			}

		default:
			return false
		}
	}

	return true
}
