#!/usr/bin/env python3
"""Oracle for tests/archive_parquet.rs: fastavro's own resolution of each input datum against
what pyarrow and duckdb read back from a Parquet file (and fastavro from an Avro container).

Reads one case as JSON on stdin:
  {"reader": SCHEMA, "writers": [SCHEMA, ...],
   "datums": [[WRITER_INDEX, HEX], ...],     # writer-encoded datums, in file order
   "parquet": PATH or null, "avro": PATH or null}

Prints JSON:
  {"rows": N,                                # datums resolved by fastavro
   "mismatches": {"pyarrow": [...], "duckdb": [...], "avro": [...]},   # first few, per reader
   "counts": {"pyarrow": N, "duckdb": N, "avro": N},                   # rows each reader saw
   "types": {FIELD: str(pyarrow type)},      # top-level Arrow types as pyarrow reads them
   "avro_schema_metadata": TEXT or null,     # the Parquet key-value metadata `avro.schema`
   "dictionary": {COLUMN PATH: bool}}        # leaf columns of the first row group: written with
                                             # a dictionary page

Every value is normalised with the reader schema before comparing: timestamps -> integer
microseconds since the epoch (UTC, or naive for local-timestamp), dates/times -> ISO text,
decimals -> str, uuids -> canonical text, bytes/fixed -> hex, maps -> sorted [key, value] pairs,
enums -> symbol, `["null", T]` -> T or None, other unions -> {branch name: value or None} (the
Parquet layout; a null branch is None).
"""
import datetime
import decimal
import io
import json
import sys
import uuid

import fastavro

EPOCH_UTC = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH = datetime.datetime(1970, 1, 1)


class Names:
    def __init__(self, schema):
        self.types = {}
        self.collect(schema, None)

    def full(self, name, ns):
        if "." in name or not ns:
            return name
        return f"{ns}.{name}"

    def collect(self, s, ns):
        if isinstance(s, list):
            for b in s:
                self.collect(b, ns)
        elif isinstance(s, dict):
            t = s.get("type")
            if t in ("record", "error", "enum", "fixed"):
                full = self.full(s["name"], s.get("namespace", ns))
                self.types[full] = s
                inner = full.rsplit(".", 1)[0] if "." in full else None
                for f in s.get("fields", []):
                    self.collect(f["type"], inner)
            elif t == "array":
                self.collect(s["items"], ns)
            elif t == "map":
                self.collect(s["values"], ns)
            elif isinstance(t, (dict, list)):
                self.collect(t, ns)

    def resolve(self, s, ns):
        """(schema dict or primitive name, namespace inside it)."""
        if isinstance(s, str):
            if s in ("null", "boolean", "int", "long", "float", "double", "bytes", "string"):
                return s, ns
            full = self.full(s, ns)
            t = self.types.get(full) or self.types.get(s)
            return t, full.rsplit(".", 1)[0] if "." in full else ns
        if isinstance(s, dict) and isinstance(s.get("type"), (dict, list)) and "logicalType" not in s:
            return self.resolve(s["type"], ns)
        if isinstance(s, dict) and s.get("type") in ("record", "error", "enum", "fixed"):
            full = self.full(s["name"], s.get("namespace", ns))
            return s, full.rsplit(".", 1)[0] if "." in full else None
        return s, ns


def branch_name(names, s, ns):
    s2, _ = names.resolve(s, ns)
    if isinstance(s2, str):
        return s2
    if isinstance(s2, list):
        return "union"
    t = s2.get("type")
    if t in ("record", "error", "enum", "fixed"):
        return names.full(s2["name"], s2.get("namespace", ns))
    if isinstance(t, str) and t not in ("array", "map"):
        return t
    return t


def micros(dt):
    if dt.tzinfo is not None:
        return (dt - EPOCH_UTC) // datetime.timedelta(microseconds=1)
    return (dt - EPOCH) // datetime.timedelta(microseconds=1)


def as_uuid(v):
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return str(uuid.UUID(bytes=bytes(v)))
    return str(uuid.UUID(str(v)))


def map_pairs(v):
    """A map as read by fastavro (dict), pyarrow (list of tuples) or duckdb (dict, or
    {"key": [...], "value": [...]})."""
    if isinstance(v, dict) and set(v) == {"key", "value"} and isinstance(v["key"], list):
        return list(zip(v["key"], v["value"]))
    if isinstance(v, dict):
        return list(v.items())
    return [tuple(p) for p in v]


def type_matches(names, s, ns, v):
    s2, ns2 = names.resolve(s, ns)
    t = s2 if isinstance(s2, str) else s2.get("type")
    lt = None if isinstance(s2, str) else s2.get("logicalType")
    if v is None:
        return t == "null"
    if isinstance(v, bool):
        return t == "boolean"
    if lt in ("timestamp-millis", "timestamp-micros", "local-timestamp-millis",
              "local-timestamp-micros"):
        return isinstance(v, datetime.datetime)
    if lt == "date":
        return isinstance(v, datetime.date)
    if isinstance(v, int):
        return t in ("int", "long")
    if isinstance(v, float):
        return t in ("float", "double")
    if isinstance(v, str):
        return t in ("string", "enum")
    if isinstance(v, (bytes, bytearray)):
        return t in ("bytes", "fixed")
    if isinstance(v, list):
        return t == "array"
    if isinstance(v, dict):
        return t in ("record", "error", "map")
    return True


def norm(names, s, ns, v, side):
    """Normalise value `v` of schema `s`; `side` is "avro" for fastavro's values."""
    s, ns = names.resolve(s, ns)
    if isinstance(s, list):
        non_null = [b for b in s if b != "null"]
        if len(s) == 2 and len(non_null) == 1:
            return None if v is None else norm(names, non_null[0], ns, v, side)
        if v is None:
            return None
        out = {}
        if side == "avro":
            taken = None
            if isinstance(v, tuple):  # (record name, value) with return_record_name
                taken = v[0]
                v = v[1]
            for b in non_null:
                bn = branch_name(names, b, ns)
                if taken is None and type_matches(names, b, ns, v):
                    taken = bn
                out[bn] = norm(names, b, ns, v, side) if bn == taken else None
        else:
            for b in non_null:
                bn = branch_name(names, b, ns)
                x = v.get(bn)
                out[bn] = None if x is None else norm(names, b, ns, x, side)
        return out
    if v is None:
        return None
    t = s if isinstance(s, str) else s.get("type")
    lt = None if isinstance(s, str) else s.get("logicalType")
    if isinstance(t, dict):
        return norm(names, t, ns, v, side)
    if lt in ("timestamp-millis", "timestamp-micros", "local-timestamp-millis",
              "local-timestamp-micros"):
        return micros(v)
    if lt == "date":
        return v.isoformat()
    if lt in ("time-millis", "time-micros"):
        return v.isoformat()
    if lt == "decimal":
        return str(v)
    if lt == "uuid":
        return as_uuid(v)
    if t in ("bytes", "fixed"):
        return bytes(v).hex()
    if t == "record" or t == "error":
        return {f["name"]: norm(names, f["type"], ns, v.get(f["name"]), side) for f in s["fields"]}
    if t == "array":
        return [norm(names, s["items"], ns, x, side) for x in v]
    if t == "map":
        return sorted([k, norm(names, s["values"], ns, x, side)] for k, x in map_pairs(v))
    if t in ("float", "double"):
        return float(v)
    return v


def diff(expected, got, label, limit=5):
    out = []
    if len(expected) != len(got):
        out.append(f"{label}: {len(got)} rows, expected {len(expected)}")
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            out.append(f"{label} row {i}: expected {json.dumps(e, sort_keys=True)}, "
                       f"got {json.dumps(g, sort_keys=True)}")
            if len(out) >= limit:
                break
    return out


def main():
    case = json.load(sys.stdin)
    reader = case["reader"]
    names = Names(reader)
    parsed_reader = fastavro.parse_schema(reader)
    expected = []
    for w, hexd in case["datums"]:
        writer = fastavro.parse_schema(case["writers"][w])
        v = fastavro.schemaless_reader(io.BytesIO(bytes.fromhex(hexd)), writer, parsed_reader)
        expected.append(norm(names, reader, None, v, "avro"))
    fields = reader["fields"]
    result = {"rows": len(expected), "mismatches": {}, "counts": {}, "types": {},
              "avro_schema_metadata": None, "dictionary": {}}

    if case.get("parquet"):
        import pyarrow.parquet as pq
        import duckdb

        path = case["parquet"]
        table = pq.read_table(path)
        result["types"] = {f.name: str(f.type) for f in table.schema}
        file_meta = pq.read_metadata(path)
        if file_meta.num_row_groups > 0:
            group = file_meta.row_group(0)
            for i in range(group.num_columns):
                column = group.column(i)
                result["dictionary"][column.path_in_schema] = column.has_dictionary_page
        meta = file_meta.metadata or {}
        text = meta.get(b"avro.schema")
        result["avro_schema_metadata"] = text.decode() if text is not None else None
        rows = table.to_pylist()
        got = [{f["name"]: norm(names, f["type"], None, r.get(f["name"]), "pyarrow")
                for f in fields} for r in rows]
        result["counts"]["pyarrow"] = len(got)
        result["mismatches"]["pyarrow"] = diff(expected, got, "pyarrow")

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        cur = con.execute("SELECT * FROM read_parquet(?)", [path])
        cols = [d[0] for d in cur.description]
        drows = [dict(zip(cols, r)) for r in cur.fetchall()]
        got = [{f["name"]: norm(names, f["type"], None, r.get(f["name"]), "duckdb")
                for f in fields} for r in drows]
        result["counts"]["duckdb"] = len(got)
        result["mismatches"]["duckdb"] = diff(expected, got, "duckdb")

    if case.get("avro"):
        with open(case["avro"], "rb") as fh:
            got = [norm(names, reader, None, r, "avro")
                   for r in fastavro.reader(fh, reader_schema=parsed_reader)]
        result["counts"]["avro"] = len(got)
        result["mismatches"]["avro"] = diff(expected, got, "avro")

    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
