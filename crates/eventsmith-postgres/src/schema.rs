//! The schema, its version, and the check on open that keeps eventsmith away from tables it
//! did not write and from schemas newer than this build.

use eventsmith_core::StoreError;

use crate::config::PostgresConfig;
use crate::error::from_pg;
use crate::pool::Conn;

/// The schema version this build creates and reads, kept in the one-row `schema_version`
/// table. Opening a schema with a newer version fails with [`StoreError::Corrupt`] before
/// anything is written.
pub const SCHEMA_VERSION: i32 = 3;

/// Version 1. Notification ids come from an identity column, drawn only while the append
/// holds the `integer_items` lock to its commit (see the crate docs): an id is never handed
/// out twice, and ids increase in commit order.
const CREATE_V1: &str = "
CREATE TABLE schema_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL
);
CREATE TABLE integer_items (
    notification_id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) NOT NULL,
    sequence_id uuid NOT NULL,
    position bigint NOT NULL,
    topic text NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (sequence_id, position),
    UNIQUE (notification_id)
);
CREATE TABLE timestamp_items (
    sequence_id uuid NOT NULL,
    position bigint NOT NULL,
    topic text NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (sequence_id, position)
);
CREATE TABLE snapshots (
    sequence_id uuid NOT NULL,
    position bigint NOT NULL,
    topic text NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (sequence_id, position)
);
CREATE TABLE tracking (
    projection text PRIMARY KEY,
    notification_id bigint NOT NULL
);
CREATE TABLE idempotency_keys (
    sequence_id uuid NOT NULL,
    key text NOT NULL,
    first_position bigint NOT NULL,
    last_position bigint NOT NULL,
    PRIMARY KEY (sequence_id, key)
);
CREATE TABLE leases (
    follower text PRIMARY KEY,
    owner uuid NOT NULL,
    expires timestamptz NOT NULL
);
";

/// Version 2 adds the append function: a group of plain appends (the usual case) is one
/// call in an autocommit statement instead of BEGIN, the lock, the statement, NOTIFY and
/// COMMIT: one statement for the server to run instead of five. It takes the same table
/// lock to its commit as a transaction of the writer does, so the two interleave safely. The
/// answer is a row per append, `(append, min id, max id, count, conflict sequence, conflict
/// position)`, as [`insert_many`](crate::writer) answers.
///
/// Version 3 gives the function a fast path: when none of the group's items is stored (no
/// conflict, the usual case, checked by one index probe per item under the lock) it inserts
/// them with a plain `INSERT … SELECT unnest(…)` and answers each append from its rows' places
/// in the group. Only a group with a conflict runs the general statement, which finds each
/// append's own conflict. Batches of 10 (criterion, `fsync=on`): 392-459 us an append
/// against 472-519 us with version 2's function, whose several-CTE statement costs more to
/// start and run than the insert it guards.
fn append_function(schema: &str) -> String {
    let schema = quote_ident(schema);
    format!(
        "CREATE OR REPLACE FUNCTION {schema}.eventsmith_append(
    ids uuid[], positions bigint[], topics text[], payloads bytea[], appends int[], channel text
) RETURNS TABLE (append int, min_id bigint, max_id bigint, inserted bigint,
    conflict_sequence uuid, conflict_position bigint)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    first_id bigint;
    last_id bigint;
    total bigint;
BEGIN
    LOCK TABLE {schema}.integer_items IN EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM unnest(ids, positions) AS b (sequence_id, position)
        JOIN {schema}.integer_items i
        ON i.sequence_id = b.sequence_id AND i.position = b.position) THEN
        RETURN QUERY {many};
    ELSE
        -- Under the lock no other transaction draws ids, and the rows are inserted in
        -- their order: the n-th row of the group takes id first_id + n - 1.
        WITH inserted AS (
            INSERT INTO {schema}.integer_items (sequence_id, position, topic, payload)
            SELECT b.sequence_id, b.position, b.topic, b.payload
            FROM unnest(ids, positions, topics, payloads)
                WITH ORDINALITY AS b (sequence_id, position, topic, payload, ord)
            ORDER BY b.ord
            RETURNING notification_id
        )
        SELECT min(notification_id), max(notification_id), count(*)
        INTO first_id, last_id, total FROM inserted;
        IF last_id - first_id + 1 <> total THEN
            RAISE EXCEPTION 'eventsmith: % rows took ids % to %, not contiguous',
                total, first_id, last_id;
        END IF;
        RETURN QUERY SELECT u.append, first_id + min(u.ord) - 1, first_id + max(u.ord) - 1,
            count(*), NULL::uuid, NULL::bigint
        FROM unnest(appends) WITH ORDINALITY AS u (append, ord) GROUP BY u.append;
    END IF;
    -- Delivered at the commit, or never if the statement fails.
    PERFORM pg_notify(channel, '');
END
$fn$",
        many = crate::writer::insert_many_body(
            &format!("{schema}.integer_items"),
            ["ids", "positions", "topics", "payloads", "appends"],
        ),
    )
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables of the current version, for recognising a foreign schema.
const TABLES: [&str; 7] = [
    "integer_items",
    "timestamp_items",
    "snapshots",
    "tracking",
    "idempotency_keys",
    "leases",
    "schema_version",
];

/// Creates the schema when it is missing, or checks its version; in one transaction under an
/// advisory lock named after the schema, so stores opening the same empty schema at once
/// create it once. Returns the schema's name.
pub(crate) async fn open(conn: &mut Conn, config: &PostgresConfig) -> Result<String, StoreError> {
    let address = config.address();
    let pg = |e| from_pg(e, &address);
    let client = &mut conn.client;
    let tx = client.transaction().await.map_err(pg)?;
    // current_schema() is the first existing schema of the search_path; a configured schema
    // may not exist yet, so its name is used instead.
    let lock_name = match config.schema() {
        Some(schema) => schema.to_owned(),
        None => {
            let row = tx
                .query_one("SELECT coalesce(current_schema(), '')", &[])
                .await
                .map_err(pg)?;
            row.get(0)
        }
    };
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('eventsmith.schema.' || $1::text))",
        &[&lock_name],
    )
    .await
    .map_err(pg)?;
    if let Some(schema) = config.schema() {
        // The name was checked (lowercase letters, digits, underscores): no quoting needed,
        // and identifiers cannot be bind parameters.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(pg)?;
    }
    let row = tx
        .query_one(
            "SELECT current_schema(), \
             (SELECT array_agg(c.relname::text) FROM pg_class c \
              JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
              AND c.relname::text = ANY($1::text[]))",
            &[&&TABLES[..]],
        )
        .await
        .map_err(pg)?;
    let schema: Option<String> = row.get(0);
    let Some(schema) = schema else {
        return Err(StoreError::Config {
            detail: format!(
                "{address}: no schema of the search_path exists; set one with the schema URL parameter"
            ),
        });
    };
    let present: Vec<String> = row.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
    if present.is_empty() {
        tx.batch_execute(CREATE_V1).await.map_err(pg)?;
        tx.batch_execute(&append_function(&schema))
            .await
            .map_err(pg)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        return Ok(schema);
    }
    if !present.iter().any(|t| t == "schema_version") {
        return Err(StoreError::Corrupt {
            detail: format!(
                "{address}: schema {schema} has tables named like eventsmith's ({}) but no schema_version table; refusing to touch it",
                present.join(", ")
            ),
            source: None,
        });
    }
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(pg)?
        .map(|r| r.get(0));
    match version {
        Some(SCHEMA_VERSION) => {}
        Some(1 | 2) => {
            // Version 1 or 2 to 3: the append function (added in 2, its fast path in 3); the
            // tables are unchanged.
            tx.batch_execute(&append_function(&schema))
                .await
                .map_err(pg)?;
            tx.execute("UPDATE schema_version SET version = $1", &[&SCHEMA_VERSION])
                .await
                .map_err(pg)?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "{address}: schema {schema} has eventsmith schema version {v}, newer than the {SCHEMA_VERSION} this build reads; upgrade eventsmith"
                ),
                source: None,
            });
        }
        other => {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "{address}: schema {schema} has unknown eventsmith schema version {other:?}"
                ),
                source: None,
            });
        }
    }
    if present.len() != TABLES.len() {
        return Err(StoreError::Corrupt {
            detail: format!(
                "{address}: schema {schema} (version {SCHEMA_VERSION}) lacks some tables: has only {}",
                present.join(", ")
            ),
            source: None,
        });
    }
    tx.commit().await.map_err(pg)?;
    Ok(schema)
}
