#!/usr/bin/env python3
"""fastavro as an independent Avro resolution oracle for tests/avro_fastavro.rs.

Reads one case as JSON on stdin:
  {"writer": SCHEMA, "reader": SCHEMA,
   "records": [VALUE, ...]                       # values of the writer schema, or
   "datums_hex": [HEX, ...]                      # datums already encoded with the writer, or
   "generate": {"count": N, "seed": S, "schema": SCHEMA}}   # gen_orders.py records, written
                                                 # with "schema" then resolved to "writer"
or many at once as {"batch": [CASE, ...]}, answered by {"batch": [ANSWER, ...]}.
VALUE is JSON; {"$hex": "00ff"} stands for bytes/fixed, {"$branch": NAME, "value": V} for a
union value of the named branch NAME (fastavro's tuple notation).

Prints {"results": [{"writer_hex": HEX, "ok": NORMALIZED} | {"writer_hex": HEX, "error": MSG}]}
or {"schema_error": MSG} when fastavro rejects a schema itself. NORMALIZED is fastavro's resolved
value, normalized with the reader schema so Rust can compare it exactly:
  bytes/fixed -> {"$bytes": hex}; float, double -> {"$f64": the 64 bits of the double, as an
  integer} (a float rounded to 32 bits first), so the comparison is exact;
  unions -> the value of the branch (no tag); enum -> symbol; logical types -> underlying value.

logicalType is stripped from both schemas before fastavro sees them: resolution happens on the
underlying type, and this keeps fastavro from turning longs into datetimes.
"""
import copy
import io
import json
import os
import struct
import sys

import fastavro

HERE = os.path.dirname(os.path.abspath(__file__))

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def strip_logical(schema):
    if isinstance(schema, dict):
        return {k: strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical(s) for s in schema]
    return schema


def from_json(value):
    """JSON test value -> Python value fastavro can write."""
    if isinstance(value, dict):
        if set(value) == {"$hex"}:
            return bytes.fromhex(value["$hex"])
        if set(value) == {"$branch", "value"}:
            return (value["$branch"], from_json(value["value"]))
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


class Names:
    """Named types of one schema, by full and by short name, for normalization."""

    def __init__(self, schema):
        self.named = {}
        self._walk(schema, None)

    def _walk(self, s, ns):
        if isinstance(s, list):
            for b in s:
                self._walk(b, ns)
        elif isinstance(s, dict):
            t = s.get("type")
            if t in ("record", "error", "enum", "fixed"):
                name = s["name"]
                space = s.get("namespace", ns)
                full = name if "." in name or not space else f"{space}.{name}"
                space = full.rsplit(".", 1)[0] if "." in full else None
                self.named[full] = s
                self.named.setdefault(full.rsplit(".", 1)[-1], s)
                if t in ("record", "error"):
                    for f in s["fields"]:
                        self._walk(f["type"], space)
                return
            if t == "array":
                self._walk(s["items"], ns)
            elif t == "map":
                self._walk(s["values"], ns)
            elif isinstance(t, (dict, list)):
                self._walk(t, ns)

    def resolve(self, s):
        while True:
            if isinstance(s, str) and s not in PRIMITIVES:
                s = self.named[s] if s in self.named else self.named[s.rsplit(".", 1)[-1]]
            elif isinstance(s, dict) and (isinstance(s["type"], (dict, list)) or s["type"] not in PRIMITIVES | {"record", "error", "enum", "fixed", "array", "map"}):
                s = s["type"]
            else:
                return s


def type_of(s):
    return s if isinstance(s, str) else ("union" if isinstance(s, list) else s["type"])


def f64_bits(x):
    # Exact: JSON float text would go through serde_json's (not always exact) float parser.
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def as_bytes(v):
    # Defaults of bytes/fixed type come back from fastavro as the JSON string from the schema.
    return v.encode("latin-1") if isinstance(v, str) else bytes(v)


def matches(v, s, names):
    s = names.resolve(s)
    t = type_of(s)
    if t == "null":
        return v is None
    if t == "boolean":
        return isinstance(v, bool)
    if t in ("int", "long"):
        return isinstance(v, int) and not isinstance(v, bool)
    if t in ("float", "double"):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t in ("bytes", "fixed"):
        return isinstance(v, (bytes, bytearray))
    if t == "string":
        return isinstance(v, str)
    if t == "enum":
        return isinstance(v, str) and v in s["symbols"]
    if t == "array":
        return isinstance(v, list)
    if t == "map":
        return isinstance(v, dict)
    if t in ("record", "error"):
        return isinstance(v, dict) and set(v) <= {f["name"] for f in s["fields"]}
    return False


def norm(v, s, names):
    s = names.resolve(s)
    t = type_of(s)
    if t == "union":
        for b in s:
            if matches(v, b, names):
                return norm(v, b, names)
        # A bytes default given as a JSON string, read into a union: fall back on the first branch.
        return norm(v, s[0], names)
    if t == "null":
        return None
    if t == "boolean":
        return bool(v)
    if t in ("int", "long"):
        return int(v)
    if t == "float":
        return {"$f64": f64_bits(struct.unpack("<f", struct.pack("<f", float(v)))[0])}
    if t == "double":
        return {"$f64": f64_bits(float(v))}
    if t in ("bytes", "fixed"):
        return {"$bytes": as_bytes(v).hex()}
    if t == "string":
        return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else v
    if t == "enum":
        return v
    if t == "array":
        return [norm(x, s["items"], names) for x in v]
    if t == "map":
        return {k: norm(x, s["values"], names) for k, x in v.items()}
    if t in ("record", "error"):
        out = {}
        for f in s["fields"]:
            if f["name"] in v:
                out[f["name"]] = norm(v[f["name"]], f["type"], names)
            elif "default" in f:
                out[f["name"]] = norm(f["default"], f["type"], names)
            else:
                raise ValueError(f"record value has no field {f['name']}")
        return out
    raise ValueError(f"unknown type {t}")


def encode(schema, record):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def main():
    case = json.load(sys.stdin)
    if "batch" in case:
        print(json.dumps({"batch": [answer(c) for c in case["batch"]]}))
    else:
        print(json.dumps(answer(case)))


def answer(case):
    writer_json = strip_logical(case["writer"])
    reader_json = strip_logical(case["reader"])
    try:
        writer = fastavro.parse_schema(copy.deepcopy(writer_json))
        reader = fastavro.parse_schema(copy.deepcopy(reader_json))
    except Exception as e:  # noqa: BLE001 - any rejection is an answer
        return {"schema_error": f"{type(e).__name__}: {e}"}

    if "generate" in case:
        sys.path.insert(0, HERE)
        import gen_orders

        g = case["generate"]
        gen_schema = fastavro.parse_schema(strip_logical(g["schema"]))
        datums = []
        for rec in gen_orders.records(g["count"], g["seed"]):
            raw = encode(gen_schema, rec)
            if g["schema"] != case["writer"]:
                # Records for another writer: resolve the generated ones to it first.
                rec = fastavro.schemaless_reader(io.BytesIO(raw), gen_schema, writer)
                raw = encode(writer, rec)
            datums.append(raw)
    elif "datums_hex" in case:
        datums = [bytes.fromhex(h) for h in case["datums_hex"]]
    else:
        datums = [encode(writer, from_json(r)) for r in case["records"]]

    reader_names = Names(reader_json)
    results = []
    for raw in datums:
        entry = {"writer_hex": raw.hex()}
        try:
            value = fastavro.schemaless_reader(io.BytesIO(raw), writer, reader)
            entry["ok"] = norm(value, reader_json, reader_names)
        except Exception as e:  # noqa: BLE001 - a resolution error is an answer
            entry["error"] = f"{type(e).__name__}: {e}"
        results.append(entry)
    return {"results": results}


if __name__ == "__main__":
    main()
