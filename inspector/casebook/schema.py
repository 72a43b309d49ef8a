"""The casebook's tables and their migrations.

A casebook is a SQLite file marked with ``PRAGMA application_id`` = :data:`APPLICATION_ID`; its schema version
is ``PRAGMA user_version`` and each applied migration is a row of ``casebook_migrations``. Migrations run in
order, each inside the caller's write transaction together with the row that records it, so a crash leaves
either the old schema or the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlite_utils

from inspector import __version__
from inspector.findings import LABELS, UNLABELED
from inspector.timestamps import utc_now

#: "MICB" (Memorization Inspector CaseBook) as a big-endian 32-bit integer: marks a SQLite file as a casebook.
APPLICATION_ID = 0x4D494342
#: What ``casebook_info.format`` says, for people browsing the file in another tool.
FORMAT_NAME = "Memorization Inspector casebook"

ALL_LABELS = (*LABELS, UNLABELED)
#: The event actions of casebook versions 1 to 3 (the CHECK of version 1's label_events).
V1_EVENT_ACTIONS = ("record", "label", "undo", "note")
#: Since version 4: "link" (a finding seen again by another run) and "run" (a run's record, no finding).
V4_EVENT_ACTIONS = (*V1_EVENT_ACTIONS, "link", "run")
#: Since version 5: "reproduce" (a finding regenerated from its record: its outcome as JSON in ``note``).
EVENT_ACTIONS = (*V4_EVENT_ACTIONS, "reproduce")
#: The reviewer of the "note" events the upgrade to version 5 adds (see :func:`_v5_full_state`).
UPGRADE_REVIEWER = "casebook upgrade to version 5"
#: What started a run (``runs.kind``).
RUN_KINDS = ("window", "inspect", "scan")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite_utils.Database], None]


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _v1_initial_schema(db: sqlite_utils.Database) -> None:
    # Blobs come last in each row: reading the columns before a blob never walks the blob's overflow pages,
    # which keeps filtering fast however large the images are.
    db.executescript(f"""
        CREATE TABLE casebook_info (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE casebook_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            inspector_version TEXT NOT NULL
        );
        CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '{UNLABELED}' CHECK (label IN ({_sql_list(ALL_LABELS)})),
            reviewer TEXT NOT NULL DEFAULT '',
            notes TEXT NOT NULL DEFAULT '',
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            seed INTEGER NOT NULL,
            suggested_verdict TEXT,
            suggestion_reason TEXT NOT NULL DEFAULT '',
            nearest_tiled_l2 REAL,
            nearest_l2 REAL,
            model_id TEXT NOT NULL DEFAULT '',
            model_sha256 TEXT NOT NULL DEFAULT '',
            metrics TEXT NOT NULL DEFAULT '{{}}',
            provenance TEXT NOT NULL DEFAULT '{{}}',
            neighbour_captions TEXT NOT NULL DEFAULT '',
            image_width INTEGER,
            image_height INTEGER,
            image_sha256 TEXT NOT NULL,
            thumbnail_sha256 TEXT,
            thumbnail_png BLOB,
            image_png BLOB NOT NULL
        );
        CREATE TABLE neighbours (
            id INTEGER PRIMARY KEY,
            finding_id INTEGER NOT NULL REFERENCES findings(id),
            rank INTEGER NOT NULL,
            index_id TEXT NOT NULL DEFAULT '',
            item_id INTEGER NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            caption TEXT NOT NULL DEFAULT '',
            duplicate_count INTEGER NOT NULL DEFAULT 1,
            l2 REAL,
            tiled_l2 REAL,
            ssim REAL,
            calibrated_l2 REAL,
            semantic_similarity REAL,
            licence TEXT,
            image_sha256 TEXT NOT NULL DEFAULT '',
            thumbnail_path TEXT,
            thumbnail_sha256 TEXT,
            thumbnail_png BLOB,
            UNIQUE (finding_id, rank)
        );
        CREATE TABLE label_events (
            id INTEGER PRIMARY KEY,
            finding_id INTEGER NOT NULL REFERENCES findings(id),
            action TEXT NOT NULL CHECK (action IN ({_sql_list(V1_EVENT_ACTIONS)})),
            label TEXT NOT NULL CHECK (label IN ({_sql_list(ALL_LABELS)})),
            previous_label TEXT,
            reviewer TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            undoes INTEGER REFERENCES label_events(id),
            image_sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE
        );
        CREATE TRIGGER label_events_are_append_only_update BEFORE UPDATE ON label_events
        BEGIN
            SELECT RAISE(ABORT, 'label_events is append-only: record a new event instead');
        END;
        CREATE TRIGGER label_events_are_append_only_delete BEFORE DELETE ON label_events
        BEGIN
            SELECT RAISE(ABORT, 'label_events is append-only: record a new event instead');
        END;
        CREATE VIEW findings_overview AS
            SELECT f.id, f.label, f.suggested_verdict, f.prompt, f.seed,
                   f.thumbnail_png AS generation, n.thumbnail_png AS nearest,
                   n.tiled_l2 AS nearest_tiled_l2, n.caption AS nearest_caption, n.source AS nearest_source,
                   f.reviewer, f.notes, f.model_id, f.updated_at
            FROM findings AS f
            LEFT JOIN neighbours AS n ON n.finding_id = f.id AND n.rank = 1;
    """)
    findings = db["findings"]
    for columns in (["label"], ["reviewer"], ["model_id"], ["model_sha256"], ["image_sha256"], ["prompt", "seed"]):
        findings.create_index(columns)
    db["neighbours"].create_index(["finding_id", "rank"], unique=False, index_name="neighbours_by_finding")
    db["label_events"].create_index(["finding_id", "id"], index_name="label_events_by_finding")
    findings.enable_fts(["prompt", "negative_prompt", "notes", "neighbour_captions"], create_triggers=True,
                        tokenize="porter")
    now = utc_now()
    db.execute(
        "INSERT INTO casebook_info (key, value) VALUES ('format', ?), ('created_at', ?), ('created_by', ?),"
        " ('event_head', ?), ('event_count', '0')",
        [FORMAT_NAME, now, f"memorization-inspector {__version__}", "0" * 64],
    )


#: SQL that picks the neighbour a finding's verdict is about: the smallest tiled l2 (ties by l2, then rank).
VERDICT_NEIGHBOUR_SQL = ("SELECT {column} FROM neighbours WHERE finding_id = {finding} AND tiled_l2 IS NOT NULL"
                         " ORDER BY tiled_l2, l2, rank LIMIT 1")


def _v2_comparison_size(db: sqlite_utils.Database) -> None:
    # Each neighbour keeps the size its distances were computed at and the training pixels exactly as compared
    # (lossless PNG), so that a report draws heatmaps from the arrays the numbers came from. Findings recorded
    # before read as NULL: the size was the index's comparison size then, not recorded.
    db.executescript("""
        ALTER TABLE neighbours ADD COLUMN comparison_size INTEGER;
        ALTER TABLE neighbours ADD COLUMN pixels_sha256 TEXT;
        ALTER TABLE neighbours ADD COLUMN pixels_png BLOB;
    """)
    # A finding's summary distance is the one its verdict used (the smallest tiled l2), not rank 1's: before
    # this version the neighbours were ordered by l2, so rank 1 could be another image.
    tiled = VERDICT_NEIGHBOUR_SQL.format(column="tiled_l2", finding="findings.id")
    l2 = VERDICT_NEIGHBOUR_SQL.format(column="l2", finding="findings.id")
    db.execute(f"UPDATE findings SET nearest_tiled_l2 = ({tiled}), nearest_l2 = ({l2})"
               " WHERE EXISTS (SELECT 1 FROM neighbours WHERE finding_id = findings.id AND tiled_l2 IS NOT NULL)")
    verdict_id = VERDICT_NEIGHBOUR_SQL.format(column="id", finding="f.id")
    db.executescript(f"""
        DROP VIEW IF EXISTS findings_overview;
        CREATE VIEW findings_overview AS
            SELECT f.id, f.label, f.suggested_verdict, f.prompt, f.seed,
                   f.thumbnail_png AS generation, n.thumbnail_png AS nearest,
                   n.tiled_l2 AS nearest_tiled_l2, n.comparison_size AS comparison_size,
                   n.caption AS nearest_caption, n.source AS nearest_source,
                   f.reviewer, f.notes, f.model_id, f.updated_at
            FROM findings AS f
            LEFT JOIN neighbours AS n ON n.id = ({verdict_id});
    """)


def _v3_index_identity(db: sqlite_utils.Database) -> None:
    # What was searched, in the user's words: each finding keeps the identity of the index its neighbours came
    # from (role, source, images, build date, content hash; JSON), and each neighbour its index's role, the URL
    # it was downloaded from and where its caption came from. Rows recorded before read as a training index
    # (every index was one then) with no URL recorded. Columns are appended: a finding's index identity is
    # read only with the whole finding, never by the list queries that stop before the image blob.
    db.executescript("""
        ALTER TABLE findings ADD COLUMN index_identity TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE neighbours ADD COLUMN index_role TEXT NOT NULL DEFAULT 'training';
        ALTER TABLE neighbours ADD COLUMN url TEXT;
        ALTER TABLE neighbours ADD COLUMN caption_source TEXT;
    """)


#: The label_events table from version 4 on: a "run" event has no finding and no label (its run's record is in
#: ``note``); every other event belongs to a finding. ``run_id`` names the run a "record", "link" or "run"
#: event belongs to (NULL for events without one, and for every event written before version 4).
_V4_LABEL_EVENTS = f"""
    CREATE TABLE label_events (
        id INTEGER PRIMARY KEY,
        finding_id INTEGER REFERENCES findings(id),
        action TEXT NOT NULL CHECK (action IN ({_sql_list(V4_EVENT_ACTIONS)})),
        label TEXT CHECK (label IN ({_sql_list(ALL_LABELS)})),
        previous_label TEXT,
        reviewer TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        undoes INTEGER REFERENCES label_events(id),
        image_sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        run_id INTEGER REFERENCES runs(id),
        CHECK ((action = 'run') = (finding_id IS NULL)),
        CHECK (action = 'run' OR label IS NOT NULL),
        CHECK (action NOT IN ('run', 'link') OR run_id IS NOT NULL)
    )"""
_EVENT_TRIGGERS = """
    CREATE TRIGGER label_events_are_append_only_update BEFORE UPDATE ON label_events
    BEGIN
        SELECT RAISE(ABORT, 'label_events is append-only: record a new event instead');
    END;
    CREATE TRIGGER label_events_are_append_only_delete BEFORE DELETE ON label_events
    BEGIN
        SELECT RAISE(ABORT, 'label_events is append-only: record a new event instead');
    END;
"""
_V1_EVENT_COLUMNS = ("id", "finding_id", "action", "label", "previous_label", "reviewer", "note", "undoes",
                     "image_sha256", "created_at", "prev_hash", "hash")


def _v4_runs(db: sqlite_utils.Database) -> None:
    # Every inspection is on the record, whatever it found: a run (window, inspect, or one prompt of a scan)
    # with its model, index, settings and counts. Findings link to the runs that made them: findings.run_id is
    # the run that first recorded a finding, run_findings every run that made the same generation (a scan and a
    # window run of one seed share one finding). Each run write is a "run" event in the hash chain, and a
    # finding's link to a run is its "record" or "link" event, so removing or editing a run is detectable.
    db.executescript(f"""
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            kind TEXT NOT NULL CHECK (kind IN ({_sql_list(RUN_KINDS)})),
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            settings TEXT NOT NULL DEFAULT '{{}}',
            model_id TEXT NOT NULL DEFAULT '',
            model_sha256 TEXT NOT NULL DEFAULT '',
            index_identity TEXT NOT NULL DEFAULT '{{}}',
            n_requested INTEGER NOT NULL CHECK (n_requested >= 0),
            n_finished INTEGER NOT NULL DEFAULT 0 CHECK (n_finished >= 0),
            cancelled INTEGER NOT NULL DEFAULT 0 CHECK (cancelled IN (0, 1)),
            error TEXT NOT NULL DEFAULT '',
            near_copies INTEGER,
            likeness INTEGER,
            novel INTEGER,
            clique_size INTEGER,
            clique_flagged INTEGER CHECK (clique_flagged IN (0, 1)),
            clique_min_size INTEGER,
            clique_seeds TEXT NOT NULL DEFAULT '[]',
            wen_score REAL,
            unknown_words TEXT NOT NULL DEFAULT '[]',
            reviewer TEXT NOT NULL DEFAULT '',
            notes TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX runs_by_kind ON runs(kind, id);
        CREATE INDEX runs_by_prompt ON runs(prompt);
        CREATE TABLE run_findings (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            finding_id INTEGER NOT NULL REFERENCES findings(id),
            PRIMARY KEY (run_id, finding_id)
        ) WITHOUT ROWID;
        CREATE INDEX run_findings_by_finding ON run_findings(finding_id, run_id);
        ALTER TABLE findings ADD COLUMN run_id INTEGER REFERENCES runs(id);
        ALTER TABLE findings ADD COLUMN generation_key TEXT;
        CREATE INDEX findings_by_generation_key ON findings(generation_key);
        CREATE INDEX findings_by_run ON findings(run_id);
    """)
    # SQLite cannot change a CHECK constraint: label_events is rebuilt (its rows copied unchanged, ids and
    # hashes included, so the chain verifies as before) with the new actions, a nullable finding and run_id.
    # The copy is made under another name and renamed, so the old table is dropped with nothing pointing at it.
    _rebuild_label_events(db, _V4_LABEL_EVENTS, _V1_EVENT_COLUMNS, "v4")
    _fill_generation_keys(db)


def _fill_generation_keys(db: sqlite_utils.Database) -> None:
    """Give each finding recorded before version 4 its generation key, where its provenance allows (an engine
    record); others keep NULL. Findings already recorded twice keep both (new records join the oldest)."""
    from inspector.casebook import jsontext
    from inspector.casebook.keys import generation_key

    rows = db.execute("SELECT id, provenance, prompt, negative_prompt, seed FROM findings"
                      " WHERE generation_key IS NULL ORDER BY id").fetchall()
    for finding_id, provenance, prompt, negative, seed in rows:
        try:
            record = jsontext.loads(provenance, {})
        except ValueError:
            continue  # unreadable provenance: nothing says what made the pixels
        if not isinstance(record, dict) or not record.get("schema"):
            continue
        image = db.execute("SELECT image_png FROM findings WHERE id = ?", [finding_id]).fetchone()[0]
        try:
            key = generation_key(record, image, prompt=prompt, negative_prompt=negative, seed=seed)
        except ValueError:
            continue  # an image that cannot be decoded: verify reports it; no key
        if key is not None:
            db.execute("UPDATE findings SET generation_key = ? WHERE id = ?", [key, finding_id])


#: The label_events table from version 5 on: the "reproduce" action, and ``finding_prev_hash`` (the hash of
#: the same finding's previous event; NULL for events written before version 5 and for run events).
_V5_LABEL_EVENTS = (_V4_LABEL_EVENTS.replace(f"({_sql_list(V4_EVENT_ACTIONS)})", f"({_sql_list(EVENT_ACTIONS)})")
                    .replace("        run_id INTEGER REFERENCES runs(id),\n",
                             "        run_id INTEGER REFERENCES runs(id),\n        finding_prev_hash TEXT,\n"))
_V4_EVENT_COLUMNS = (*_V1_EVENT_COLUMNS, "run_id")


def _v5_full_state(db: sqlite_utils.Database) -> None:
    # Every field a person changes is in the hash chain: label and reviewer always were; from version 5 a
    # finding's notes at recording are in its "record" event too, reproductions are events, and each finding's
    # events chain among themselves (finding_prev_hash) and end at the hash findings.event_head keeps, so that
    # removing any event of a finding names that finding.
    _rebuild_label_events(db, _V5_LABEL_EVENTS, _V4_EVENT_COLUMNS, "v5")
    db.execute("ALTER TABLE findings ADD COLUMN event_head TEXT")
    _attest_recorded_notes(db)
    db.execute("UPDATE findings SET event_head = (SELECT e.hash FROM label_events AS e WHERE e.finding_id ="
               " findings.id ORDER BY e.id DESC LIMIT 1)")


def _rebuild_label_events(db: sqlite_utils.Database, create_sql: str, columns: Sequence[str], tag: str) -> None:
    """Rebuild label_events with ``create_sql`` (SQLite cannot change a CHECK constraint): the rows are copied
    unchanged (ids and hashes included, so the chain verifies as before) into a table made under another name,
    which is then renamed, so the old table is dropped with nothing pointing at it; indexes and the append-only
    triggers are made again."""
    names = ", ".join(columns)
    db.executescript(create_sql.replace("CREATE TABLE label_events (", f"CREATE TABLE label_events_{tag} (")
                     .replace("REFERENCES label_events(id)", f"REFERENCES label_events_{tag}(id)") + ";")
    db.execute(f"INSERT INTO label_events_{tag} ({names}) SELECT {names} FROM label_events ORDER BY id")
    db.executescript(f"""
        DROP TRIGGER label_events_are_append_only_update;
        DROP TRIGGER label_events_are_append_only_delete;
        DROP TABLE label_events;
        ALTER TABLE label_events_{tag} RENAME TO label_events;
        CREATE INDEX label_events_by_finding ON label_events(finding_id, id);
        CREATE INDEX label_events_by_run ON label_events(run_id, id);
    """ + _EVENT_TRIGGERS)


def _attest_recorded_notes(db: sqlite_utils.Database) -> None:
    """Before version 5 a finding's notes given when it was recorded were not in its "record" event. Where the
    events alone do not give a finding the notes it has, and no event of it ever set notes, append a "note"
    event (reviewer :data:`UPGRADE_REVIEWER`) holding them, so that from now on verify checks them; a finding
    whose notes disagree with an event that did set them is left for verify to report."""
    from inspector.casebook.chain import GENESIS, event_hash
    from inspector.casebook.verify import finding_states

    states = finding_states(db.conn)
    setters = {fid for (fid,) in db.execute(
        "SELECT DISTINCT finding_id FROM label_events WHERE finding_id IS NOT NULL AND"
        " (action = 'note' OR (action = 'label' AND note <> ''))")}
    last = db.execute("SELECT id, hash FROM label_events ORDER BY id DESC LIMIT 1").fetchone()
    last_id, last_hash = last if last else (0, GENESIS)
    appended = 0
    rows = db.execute("SELECT id, label, notes, image_sha256 FROM findings ORDER BY id").fetchall()
    for fid, label, notes, image_sha in rows:
        state = states.get(fid)
        if state is None or (notes or "") == state.notes or fid in setters:
            continue
        own = db.execute("SELECT hash FROM label_events WHERE finding_id = ? ORDER BY id DESC LIMIT 1",
                         [fid]).fetchone()
        event = {"id": last_id + 1, "finding_id": fid, "action": "note", "label": label, "previous_label": label,
                 "reviewer": UPGRADE_REVIEWER, "note": notes or "", "undoes": None, "image_sha256": image_sha,
                 "created_at": utc_now(), "run_id": None, "finding_prev_hash": own[0] if own else GENESIS,
                 "prev_hash": last_hash}
        event["hash"] = event_hash(last_hash, event)
        names = list(event)
        db.execute(f"INSERT INTO label_events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                   [event[n] for n in names])
        last_id, last_hash = event["id"], event["hash"]
        appended += 1
    if appended:
        db.execute("UPDATE casebook_info SET value = ? WHERE key = 'event_head'", [last_hash])
        db.execute("UPDATE casebook_info SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT) WHERE key ="
                   " 'event_count'", [appended])


#: Every migration, oldest first; version n brings the schema from n - 1 to n. Never edit a released one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "findings, neighbours, append-only label events, full-text search", _v1_initial_schema),
    Migration(2, "neighbours keep their comparison size and compared pixels; summaries quote the verdict's "
                 "neighbour", _v2_comparison_size),
    Migration(3, "findings keep the identity of the index searched; neighbours their index role, url and caption "
                 "source", _v3_index_identity),
    Migration(4, "runs: every inspection on the record, findings linked to their runs, run events in the chain;"
                 " one finding per generation (generation key)", _v4_runs),
    Migration(5, "every field a person changes in the chain: notes at recording, reproductions, each finding's"
                 " own chain of events and its newest event's hash", _v5_full_state),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def migrate(db: sqlite_utils.Database, from_version: int) -> list[int]:
    """Apply the migrations after ``from_version`` inside the caller's open write transaction.

    Returns the versions applied. The caller has checked that ``from_version`` <= :data:`SCHEMA_VERSION`.
    """
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= from_version:
            continue
        migration.apply(db)
        db.execute(
            "INSERT INTO casebook_migrations (version, name, applied_at, inspector_version) VALUES (?, ?, ?, ?)",
            [migration.version, migration.name, utc_now(), __version__],
        )
        applied.append(migration.version)
    if applied:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return applied
