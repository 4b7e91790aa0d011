"""An SQLite index of a results root: each run's records, re-parsed only when its files change."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from results.analysis.index_rows import Row, record_row
from results.errors import ResultsError
from results.model.records import records_from_run
from results.model.rundir import load_run
from results.model.schema import SCHEMA_VERSION, Record
from results.pool import bulk, process_pool, workers_for
from runner.rundir import PROVENANCE_FILE, RUN_FILE, STATUS_FILE

INDEX_FILE = ".index.sqlite"  # hidden, so find_runs never takes it for a run
# bump when the tables or what a row holds change: an index of another version is rebuilt
# 2: records gained endpoint, prefix_len and lengths; 3: slo, search; 4: sweep;
# 5: replicas, spread, partition; 6: the agent's probe (server counters, telemetry) as metrics
INDEX_VERSION = 6
# a cold build of a large root holds the write lock for seconds; a second process waits for it
BUSY_TIMEOUT_S = 60.0
# below this many runs to read, starting worker processes costs more than it saves
PARALLEL_FROM = 16
NOT_A_RUN = "not a run directory (no run.json)"
_DECODER = msgspec.json.Decoder(Record, strict=False)

# filter keys with a column of their own (lower-cased as Filter compares), so SQL can narrow
_COLUMNS = {
    "run": "run_id",
    "point": "point_id",
    "scenario": "scenario",
    "vendor": "vendor",
    "model": "model",
    "precision": "precision",
    "gpu": "gpu",
    "verdict": "verdict",
}
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    name TEXT PRIMARY KEY,      -- the run directory's name under the root
    signature TEXT NOT NULL,    -- names, sizes and mtimes of the files its records come from
    error TEXT                  -- why it could not be read, or NULL
);
CREATE TABLE records (
    run TEXT NOT NULL,
    seq INTEGER NOT NULL,       -- the point's place in run.json
    run_id TEXT NOT NULL,
    point_id TEXT NOT NULL,
    scenario TEXT NOT NULL,
    vendor TEXT NOT NULL,
    model TEXT NOT NULL,
    precision TEXT NOT NULL,
    gpu TEXT NOT NULL,
    verdict TEXT NOT NULL,
    data TEXT NOT NULL,         -- Record.to_dict() as JSON: the record itself
    PRIMARY KEY (run, seq)
);
CREATE INDEX records_model ON records (model);
CREATE INDEX records_scenario ON records (scenario, vendor, precision);
CREATE INDEX records_run_id ON records (run_id);
"""


class IndexUnavailable(ResultsError):
    """The index cannot be written here (a read-only root, or held too long by another writer)."""


@dataclass(frozen=True)
class Problem:
    """A directory under the root that gives no records, and why."""

    path: Path
    message: str

    @property
    def warning(self) -> str:
        return f"skipped {self.path}: {self.message}"


@dataclass(frozen=True)
class Summary:
    """What one refresh found and did."""

    index: Path
    runs: int  # run directories under the root, readable or not
    records: int
    parsed: int  # run directories (re)read this time
    removed: int  # gone since the last refresh
    rebuilt: bool
    problems: tuple[Problem, ...]


def index_path(root: Path | str) -> Path:
    return Path(root) / INDEX_FILE


def _stat_part(path: str, name: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{name}:{st.st_size}:{st.st_mtime_ns}"


def run_signature(run_dir: Path | str) -> str | None:
    """A digest of what a run's records are made from; None if `run_dir` is no run directory."""
    # plain strings, not Paths: a refresh of 500 runs stats 11,500 files, on every command
    base = os.fspath(run_dir)
    join = os.path.join
    parts = [
        _stat_part(join(base, name), name) for name in (RUN_FILE, STATUS_FILE, PROVENANCE_FILE)
    ]
    if parts[0] is None and parts[1] is None:
        return None
    raw = join(base, "raw")
    try:
        with os.scandir(raw) as entries:
            names = sorted(e.name for e in entries if e.is_file())
    except OSError:
        names = []
    parts += [_stat_part(join(raw, name), name) for name in names]
    text = "|".join(p or "-" for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def scan_root(root: Path) -> tuple[dict[str, str], list[str]]:
    """Run directories under `root` (name -> signature) and the other, visible, directories."""
    runs: dict[str, str] = {}
    others: list[str] = []
    try:
        with os.scandir(root) as entries:
            children = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise ResultsError(f"cannot read {root}: {exc.strerror or exc}") from exc
    # dot-directories are runs still being written (.<id>.partial) or leftovers of one
    base = os.fspath(root)
    for name in children:
        signature = run_signature(os.path.join(base, name))
        if signature is None:
            others.append(name)
        else:
            runs[name] = signature
    return runs, others


def _writable(root: Path) -> bool:
    db = root / INDEX_FILE
    return os.access(root, os.W_OK | os.X_OK) and (not db.exists() or os.access(db, os.W_OK))


@contextlib.contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    # autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _versions_match(conn: sqlite3.Connection) -> bool:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "runs", "records"} <= tables:
        return False
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    return meta.get("index_version") == str(INDEX_VERSION) and meta.get("record_schema") == str(
        SCHEMA_VERSION
    )


def _recreate(conn: sqlite3.Connection) -> None:
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall():
        conn.execute(f'DROP TABLE "{name}"')
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("index_version", str(INDEX_VERSION)), ("record_schema", str(SCHEMA_VERSION))],
    )


def _parse(job: tuple[Path, str]) -> tuple[str, str | None, list[Row]]:
    """(name, why it cannot be read or None, its record rows): what one run adds to the index."""
    root, name = job
    try:
        records = records_from_run(load_run(root / name))
    except ResultsError as exc:
        return name, str(exc), []
    return name, None, [record_row(name, seq, record) for seq, record in enumerate(records)]


def _parsed(root: Path, names: list[str]) -> Iterator[tuple[str, str | None, list[Row]]]:
    """Each run of `names` parsed, in order; a large batch is spread over the CPUs."""
    workers = workers_for(len(names))
    jobs = [(root, name) for name in names]
    if workers < 2 or len(names) < PARALLEL_FROM:
        yield from map(_parse, jobs)
        return
    # reading JSON is CPU-bound: processes, not threads; rows pickle cheaply (all text)
    pool = process_pool(workers)
    try:
        yield from pool.map(_parse, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
    except BaseException:
        # Ctrl-C or a failed write: drop the queued runs instead of reading them all first
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _refresh(root: Path, found: dict[str, str], rebuild: bool) -> tuple[int, int, int, bool]:
    """Bring the index in line with `found`; (records, parsed, removed, rebuilt)."""
    with _connect(root / INDEX_FILE) as conn:
        # one writer at a time; a second refresh waits, then finds nothing left to do
        conn.execute("BEGIN IMMEDIATE")
        try:
            rebuilt = rebuild or not _versions_match(conn)
            if rebuilt:
                _recreate(conn)
            stored = dict(conn.execute("SELECT name, signature FROM runs").fetchall())
            stale = [name for name in stored if found.get(name) != stored[name]]
            fresh = [name for name, sig in found.items() if stored.get(name) != sig]
            conn.executemany("DELETE FROM records WHERE run = ?", [(n,) for n in stale])
            conn.executemany("DELETE FROM runs WHERE name = ?", [(n,) for n in stale])
            for name, error, rows in _parsed(root, fresh):
                conn.execute(
                    "INSERT INTO runs (name, signature, error) VALUES (?, ?, ?)",
                    (name, found[name], error),
                )
                conn.executemany(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
            (count,) = conn.execute("SELECT count(*) FROM records").fetchone()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    removed = sum(1 for name in stale if name not in found)
    return int(count), len(fresh), removed, rebuilt


def _discard(db: Path) -> None:
    for path in (db, db.with_name(db.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def refresh(
    root: Path | str,
    *,
    rebuild: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Summary:
    """Update `root`'s index from its run directories (all of them with `rebuild`).

    Raises IndexUnavailable where the index cannot be written; a damaged index file is thrown
    away and rebuilt, with a warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"{root} does not exist or is not a directory")
    if not _writable(root):
        raise IndexUnavailable(f"{root} is not writable: the index cannot be kept there")
    found, others = scan_root(root)
    db = root / INDEX_FILE
    try:
        try:
            counts = _refresh(root, found, rebuild)
        except sqlite3.OperationalError:
            raise  # locked or read-only: not damage
        except sqlite3.DatabaseError as exc:
            if warn is not None:
                warn(f"the index {db} is damaged ({exc}): rebuilding it from the run directories")
            _discard(db)
            counts = _refresh(root, found, rebuild=True)
    except sqlite3.OperationalError as exc:
        raise IndexUnavailable(f"the index {db} cannot be written ({exc})") from exc
    problems = [Problem(root / name, NOT_A_RUN) for name in others]
    with _connect(db) as conn:
        problems += [
            Problem(root / name, error)
            for name, error in conn.execute(
                "SELECT name, error FROM runs WHERE error IS NOT NULL ORDER BY name"
            )
        ]
    records, parsed, removed, rebuilt = counts
    return Summary(
        index=db,
        runs=len(found),
        records=records,
        parsed=parsed,
        removed=removed,
        rebuilt=rebuilt,
        problems=tuple(sorted(problems, key=lambda p: str(p.path))),
    )


def _where(terms: Sequence[tuple[str, Sequence[str]]]) -> tuple[str, list[object]]:
    """SQL that keeps every record the terms may match (the caller still applies the Filter)."""
    clauses: list[str] = []
    params: list[object] = []
    for key, values in terms:
        column = _COLUMNS.get(key)
        if column is None or not values:
            continue
        options: list[str] = []
        for value in values:
            if key == "run":
                options.append(f"substr({column}, 1, ?) = ?")
                params += [len(value), value]
            elif key == "model":
                options.append(f"({column} = ? OR substr({column}, -?) = ?)")
                params += [value, len(value) + 1, "/" + value]
            else:
                options.append(f"{column} = ?")
                params.append(value)
        clauses.append("(" + " OR ".join(options) + ")")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def query(root: Path | str, terms: Sequence[tuple[str, Sequence[str]]] = ()) -> list[Record]:
    """The indexed records of `root` (refresh first), narrowed by filter terms, in run order."""
    root = Path(root)
    where, params = _where(terms)
    with _connect(root / INDEX_FILE) as conn:
        rows = conn.execute(
            f"SELECT run, data FROM records{where} ORDER BY run, seq",  # noqa: S608 (built above)
            params,
        ).fetchall()
    records: list[Record] = []
    run_dirs: dict[str, str] = {}
    with bulk():
        for name, data in rows:
            # the root may have moved since the run was indexed: its path is where it is now
            run_dir = run_dirs.get(name)
            if run_dir is None:
                run_dir = run_dirs[name] = str(root / name)
            records.append(_record(data, run_dir))
    return records


def _record(data: str, run_dir: str) -> Record:
    """The record a row holds, at `run_dir`."""
    try:
        # straight into the dataclass (three times faster than json.loads and from_dict); lax
        # mode reads qps "inf" as the float
        record = _DECODER.decode(data)
    except msgspec.DecodeError:
        # NaN or infinity, which json wrote: json reads them
        values = json.loads(data)
        values["run_dir"] = run_dir
        return Record.from_dict(values)
    # the record is this function's own until it returns; frozen dataclasses set their fields
    # the same way in __init__
    object.__setattr__(record, "run_dir", run_dir)
    return record
