package postgres

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// queries are the store's SQL statements with the schema filled in. Table
// placeholders ({{rows}}, ...) become schema-qualified, quoted names such as
// "tidemark"."tidemark_rows"; {{schema}}, used by migrations, the quoted
// schema.
type queries struct {
	replacer *strings.Replacer

	migrations string // the migrations table

	flowCreate, flowGen, flowAdvance    string
	flowDrop                            []string
	lockAdvance, lockRetake, lockHolder string

	sourceCreate, sourceID, sourceStatus, sourceFailing, sourceNotes, sourceNotesSave string

	targetList, targetLock, targetCreate, targetRestage string
	targetCommit, targetDisown, targetDelete            string
	targetLost, targetDestroyed                         string
	attachmentsLock, attachmentStage                    string

	rowLookup, rowLoad, rowScan, rowCount, rowErrors string
	ownerFind, ownerExists                           string

	rowInsert, rowStage, ownerAdd string

	rowCommit, rowBump, rowFail, rowFailNew, ownerDrop, rowDelete string
}

// replace fills in the placeholders of sql.
func (q *queries) replace(sql string) string { return q.replacer.Replace(sql) }

const targetColumns = `id, flow, kind, key, parent_id, committed, record, staged, destroyed_gen, lost_gen, updated_at`

const rowMetaColumns = `id, key, ordinal, content_fp, logic_fp, gen, staged IS NOT NULL, error_count`

func newQueries(schema string) queries {
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	q := queries{replacer: strings.NewReplacer(
		"{{schema}}", pgx.Identifier{schema}.Sanitize(),
		"{{migrations}}", table("tidemark_migrations"),
		"{{flows}}", table("tidemark_flows"),
		"{{sources}}", table("tidemark_sources"),
		"{{targets}}", table("tidemark_targets"),
		"{{rows}}", table("tidemark_rows"),
		"{{owners}}", table("tidemark_owners"),
		"{{locks}}", table("tidemark_locks"),
		"{{passes}}", table("tidemark_passes"),
		"{{claims}}", table("tidemark_claims"),
		"{{writers}}", table("tidemark_target_writers"),
		"{{outbox}}", table("tidemark_outbox"),
	)}
	r := q.replace
	q.migrations = r(`{{migrations}}`)

	q.flowCreate = r(`INSERT INTO {{flows}} (name, gen, created_at) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING`)
	q.flowGen = r(`SELECT gen FROM {{flows}} WHERE name = $1`)
	q.flowAdvance = r(`UPDATE {{flows}} SET gen = gen + 1 WHERE name = $1 RETURNING gen`)
	q.flowDrop = []string{
		r(`DELETE FROM {{owners}} WHERE target_id IN (SELECT id FROM {{targets}} WHERE flow = $1)`),
		r(`DELETE FROM {{rows}} WHERE source_id IN (SELECT id FROM {{sources}} WHERE flow = $1)`),
		r(`DELETE FROM {{targets}} WHERE flow = $1`),
		r(`DELETE FROM {{sources}} WHERE flow = $1`),
		r(`DELETE FROM {{flows}} WHERE name = $1`),
	}

	// Taking a flow's lock advances its epoch and records the holder,
	// with the session's server process, by which lockHolder tells a
	// record of the session holding the lock from one left by a session
	// that ended.
	q.lockAdvance = r(`INSERT INTO {{locks}} AS l (flow, epoch, holder_backend, holder_pid, holder_host, holder_since)
		VALUES ($1, 1, pg_backend_pid(), $2, $3, $4)
		ON CONFLICT (flow) DO UPDATE SET epoch = l.epoch + 1, holder_backend = excluded.holder_backend,
			holder_pid = excluded.holder_pid, holder_host = excluded.holder_host, holder_since = excluded.holder_since
		RETURNING epoch`)
	// Taking it again in a new session keeps the lock only if nobody took
	// it meanwhile, the epoch unchanged: no row is updated otherwise.
	q.lockRetake = r(`UPDATE {{locks}} SET holder_backend = pg_backend_pid() WHERE flow = $1 AND epoch = $2`)
	// The holder of a flow's lock, if its record is from the session
	// holding the advisory lock $2 (its key's high and low halves are the
	// lock's classid and objid) in this database.
	q.lockHolder = r(`SELECT l.holder_pid, l.holder_host, l.holder_since FROM {{locks}} AS l
		WHERE l.flow = $1 AND l.holder_backend IN (
			SELECT pid FROM pg_catalog.pg_locks
			WHERE locktype = 'advisory' AND granted AND objsubid = 1
				AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
				AND classid = (($2::bigint >> 32) & 4294967295)::oid AND objid = ($2::bigint & 4294967295)::oid)`)

	q.sourceCreate = r(`INSERT INTO {{sources}} (flow, name) VALUES ($1, $2) ON CONFLICT (flow, name) DO NOTHING`)
	q.sourceID = r(`SELECT id FROM {{sources}} WHERE flow = $1 AND name = $2`)
	q.sourceStatus = r(`SELECT count(processed_at), count(error), max(processed_at) FROM {{rows}} WHERE source_id = $1`)
	q.sourceFailing = r(`SELECT count(*) FROM {{rows}} WHERE source_id = $1 AND error IS NOT NULL`)
	q.sourceNotes = r(`SELECT options, last_update FROM {{sources}} WHERE id = $1`)
	q.sourceNotesSave = r(`UPDATE {{sources}} SET options = coalesce($2, options), last_update = coalesce($3, last_update) WHERE id = $1`)

	q.targetList = r(`SELECT ` + targetColumns + ` FROM {{targets}} WHERE flow = $1 ORDER BY id`)
	q.targetLock = r(`SELECT id, staged FROM {{targets}} WHERE flow = $1 AND key = $2 FOR UPDATE`)
	q.targetCreate = r(`INSERT INTO {{targets}} (flow, kind, key, parent_id, staged, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (flow, key) DO NOTHING RETURNING ` + targetColumns)
	q.targetRestage = r(`UPDATE {{targets}} SET staged = $2, kind = $3, updated_at = $4 WHERE id = $1 RETURNING ` + targetColumns)
	q.targetCommit = r(`UPDATE {{targets}} SET committed = true, record = $3, staged = NULL, updated_at = $4 WHERE id = $1 AND flow = $2`)
	q.targetDisown = r(`DELETE FROM {{owners}} WHERE target_id = $1`)
	q.targetDelete = r(`DELETE FROM {{targets}} WHERE id = $1 OR parent_id = $1`)
	q.targetLost = r(`UPDATE {{targets}} SET lost_gen = $2 WHERE id = $1`)
	q.targetDestroyed = r(`UPDATE {{targets}} SET destroyed_gen = $2 WHERE id = $1`)
	q.attachmentsLock = r(`SELECT id, staged FROM {{targets}} WHERE parent_id = $1 ORDER BY id FOR UPDATE`)
	q.attachmentStage = r(`UPDATE {{targets}} SET staged = $2 WHERE id = $1`)

	// A join with unnest keeps to the (source_id, key) index whatever the
	// number of keys, where key = ANY($2) may turn into a table scan.
	q.rowLookup = r(`SELECT r.id, r.key, r.ordinal, r.content_fp, r.logic_fp, r.gen, r.staged IS NOT NULL, r.error_count
		FROM unnest($2::text[]) AS u(k)
		JOIN {{rows}} AS r ON r.source_id = $1 AND r.key = u.k`)
	q.rowLoad = r(`SELECT id, tracking, staged FROM {{rows}} WHERE id = ANY($1::bigint[])`)
	q.rowScan = r(`SELECT ` + rowMetaColumns + ` FROM {{rows}} WHERE source_id = $1 AND id > $2 ORDER BY id LIMIT $3`)
	q.rowCount = r(`SELECT count(*) FROM {{rows}} WHERE source_id = $1`)
	q.rowErrors = r(`SELECT key, error, error_count, error_at FROM {{rows}}
		WHERE source_id = $1 AND error IS NOT NULL ORDER BY error_at DESC, id LIMIT $2`)
	q.ownerExists = r(`SELECT EXISTS (SELECT FROM {{owners}} WHERE target_id = $1)`)
	q.ownerFind = r(`SELECT u.ord, o.row_id
		FROM unnest($1::bigint[], $2::bytea[]) WITH ORDINALITY AS u(target_id, key_hash, ord)
		JOIN {{owners}} AS o ON o.target_id = u.target_id AND o.key_hash = u.key_hash
		ORDER BY u.ord, o.row_id`)

	// Precommit. New rows are inserted in input order (so their ids
	// ascend with it) and returned with their keys; a row that exists by
	// now is found by key and restaged.
	q.rowInsert = r(`INSERT INTO {{rows}} (source_id, key, staged)
		SELECT $1::bigint, u.key, u.staged FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS u(key, staged, ord) ORDER BY u.ord
		ON CONFLICT (source_id, key) DO UPDATE SET staged = excluded.staged
		RETURNING id, key`)
	q.rowStage = r(`UPDATE {{rows}} AS r SET staged = u.staged
		FROM unnest($1::bigint[], $2::bytea[]) AS u(id, staged) WHERE r.id = u.id`)
	// An ownership of a new row (row_id 0) finds the row by key; the rows
	// were inserted by the statement before, in the same transaction. A
	// row not found leaves row_id NULL, which the NOT NULL constraint
	// refuses.
	q.ownerAdd = r(`INSERT INTO {{owners}} (target_id, key_hash, row_id)
		SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[])
		ON CONFLICT DO NOTHING`)

	// Commit.
	q.rowCommit = r(`UPDATE {{rows}} AS r SET ordinal = u.ordinal, content_fp = u.content_fp, logic_fp = u.logic_fp,
			gen = u.gen, tracking = u.tracking, staged = NULL, error = NULL, error_count = 0, error_at = NULL,
			processed_at = $1::timestamptz
		FROM unnest($2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[], $6::bigint[], $7::bytea[])
			AS u(id, ordinal, content_fp, logic_fp, gen, tracking)
		WHERE r.id = u.id`)
	q.rowBump = r(`UPDATE {{rows}} AS r SET ordinal = u.ordinal, error = NULL, error_count = 0, error_at = NULL,
			processed_at = $1::timestamptz
		FROM unnest($2::bigint[], $3::bigint[]) AS u(id, ordinal)
		WHERE r.id = u.id`)
	q.rowFail = r(`UPDATE {{rows}} AS r SET error = u.message, error_count = r.error_count + u.n, error_at = $1::timestamptz
		FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS u(id, message, n)
		WHERE r.id = u.id`)
	q.rowFailNew = r(`INSERT INTO {{rows}} AS r (source_id, key, error, error_count, error_at)
		SELECT $1::bigint, u.key, u.message, u.n, $2::timestamptz
		FROM unnest($3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY AS u(key, message, n, ord) ORDER BY u.ord
		ON CONFLICT (source_id, key) DO UPDATE SET error = excluded.error,
			error_count = r.error_count + excluded.error_count, error_at = excluded.error_at`)
	q.ownerDrop = r(`DELETE FROM {{owners}} AS o
		USING unnest($1::bigint[], $2::bytea[], $3::bigint[]) AS u(target_id, key_hash, row_id)
		WHERE o.target_id = u.target_id AND o.key_hash = u.key_hash AND o.row_id = u.row_id`)
	q.rowDelete = r(`DELETE FROM {{rows}} WHERE id = ANY($1::bigint[])`)
	return q
}
