// Added to FerretDB v1.24.2's internal/handler by tools/ferretdb/build.sh (this CRM's
// local build; production runs MongoDB and needs none of it).
//
// FerretDB v1 executes update, findAndModify and delete as read-modify-write in Go:
// query the backend, filter and modify the documents in memory, write them back. Nothing
// isolates two such commands on one document, so concurrent `$inc`s lose increments and
// two version-guarded updates can both "succeed". MongoDB makes every single-document
// write atomic. crmLockCollection serializes the writes of one collection inside this
// process, which restores that guarantee (one FerretDB process per data directory, as
// scripts/infra.sh runs it).

package handler

import (
	"context"
	"sync"

	"github.com/FerretDB/FerretDB/internal/backends"
)

// crmWriteLocks maps "<database>\x00<collection>" to a one-slot semaphore.
var crmWriteLocks sync.Map

// crmLockCollection waits until no other write of the collection runs and returns the
// function that releases it. It gives up when ctx ends (client gone, maxTimeMS).
func crmLockCollection(ctx context.Context, db, coll string) (func(), error) {
	key := db + "\x00" + coll

	v, ok := crmWriteLocks.Load(key)
	if !ok {
		v, _ = crmWriteLocks.LoadOrStore(key, make(chan struct{}, 1))
	}

	sem := v.(chan struct{})

	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// crmLockedInsertAll is c.InsertAll under the collection's write lock. Inserts take it
// too so that an upsert (query, find nothing, insert) never interleaves with a plain
// insert of the same key: serialized, the upsert either sees the inserted document and
// updates it or inserts first and the plain insert fails with a duplicate key, the two
// outcomes MongoDB gives (it retries an upsert that hits a duplicate key as an update).
// Without the lock, the upsert's insert would fail with a duplicate key.
func crmLockedInsertAll(ctx context.Context, db, coll string, c backends.Collection, params *backends.InsertAllParams) (*backends.InsertAllResult, error) { //nolint:lll // for readability
	unlock, err := crmLockCollection(ctx, db, coll)
	if err != nil {
		return nil, err
	}
	defer unlock()

	return c.InsertAll(ctx, params)
}
