#!/usr/bin/env python3
"""Protobuf oracle for tests/protobuf_python.rs: Google's own Python protobuf runtime, an
implementation independent of schemabridge.

Descriptors come in as serialized FileDescriptorSets (built by protox in the Rust test), so no
protoc is needed.

    protobuf_oracle.py gen FDS MESSAGE COUNT SEED
        Writes COUNT messages of type MESSAGE, filled at random (every field kind, nested,
        repeated, maps, oneofs, edge values), one hex-encoded serialization per line.

    protobuf_oracle.py check CASES_JSON
        CASES_JSON: {"writer": [FDS, MESSAGE], "reader": [FDS, MESSAGE],
                     "items": [{"mode": "preserve"|"drop", "original": HEX, "transcoded": HEX,
                                "narrowed": BOOL}]}
        For each item, the transcoded bytes parsed with the reader must equal Python's own
        reader parse of the ORIGINAL bytes: same MessageToDict, and
          preserve: the same serialization, unknown fields included, and a reader that
                    re-encodes hands the writer back the original message exactly when
                    schemabridge did not report a narrowed value;
          drop:     the same serialization once the original's unknown fields are discarded,
                    and no unknown fields anywhere in the transcoded message.
        Prints {"checked": N, "failures": [...]} and exits 1 when any item fails.
"""

import json
import random
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor as FD


def load(fds_path, name):
    with open(fds_path, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:  # dependencies first (protox orders them so)
        pool.AddSerializedFile(file.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


INT32 = [0, 1, -1, 2**31 - 1, -(2**31)]
INT64 = [0, 1, -1, 2**63 - 1, -(2**63), 2**40]
UINT32 = [0, 1, 2**32 - 1, 2**31]
UINT64 = [0, 1, 2**64 - 1, 2**63]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1024.0]
STRINGS = ["", "a", "héllo", "日本語", "emoji 🎉"]


def scalar(f, rng):
    t = f.type
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return rng.choice(INT32 + [rng.randint(-1000, 1000)])
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return rng.choice(INT64 + [rng.randint(-(2**40), 2**40)])
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return rng.choice(UINT32 + [rng.randint(0, 2**32 - 1)])
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return rng.choice(UINT64 + [rng.randint(0, 2**64 - 1)])
    if t == FD.TYPE_BOOL:
        return rng.random() < 0.5
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return rng.choice(FLOATS)
    if t == FD.TYPE_STRING:
        return rng.choice(STRINGS + ["".join(rng.choice("abcxyz") for _ in range(rng.randint(1, 40)))])
    if t == FD.TYPE_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    if t == FD.TYPE_ENUM:
        numbers = [v.number for v in f.enum_type.values]
        if not getattr(f.enum_type, "is_closed", False):
            numbers.append(99)  # open enum: a number no version declares
        return rng.choice(numbers)
    raise ValueError(f"unexpected type {t} for {f.full_name}")


def is_repeated(f):
    # `label` is gone in protobuf 7; `is_repeated` is not in protobuf 4.
    flag = getattr(f, "is_repeated", None)
    return flag if flag is not None else f.label == FD.LABEL_REPEATED


def fill(msg, rng, depth):
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Timestamp":
        msg.seconds = rng.randint(0, 4102444800)
        msg.nanos = rng.randint(0, 999_999_999)
        return
    chosen = {o.full_name: rng.choice(list(o.fields) + [None]) for o in desc.oneofs}
    for f in desc.fields:
        oneof = f.containing_oneof
        if oneof is not None:
            if chosen[oneof.full_name] is not f:
                continue
        elif rng.random() < 0.2:
            continue
        is_message = f.type in (FD.TYPE_MESSAGE, FD.TYPE_GROUP)
        if is_message and f.message_type.GetOptions().map_entry:
            key_f = f.message_type.fields_by_name["key"]
            value_f = f.message_type.fields_by_name["value"]
            target = getattr(msg, f.name)
            for _ in range(rng.randint(0, 3)):
                key = scalar(key_f, rng)
                if value_f.type == FD.TYPE_MESSAGE:
                    fill(target[key], rng, depth + 1)
                else:
                    target[key] = scalar(value_f, rng)
        elif is_repeated(f):
            target = getattr(msg, f.name)
            for _ in range(rng.randint(0, 3)):
                if is_message:
                    if depth < 4:
                        fill(target.add(), rng, depth + 1)
                else:
                    target.append(scalar(f, rng))
        elif is_message:
            if depth < 4:
                sub = getattr(msg, f.name)
                sub.SetInParent()
                fill(sub, rng, depth + 1)
        else:
            setattr(msg, f.name, scalar(f, rng))


def gen(fds, name, count, seed):
    cls = load(fds, name)
    rng = random.Random(seed)
    for _ in range(count):
        msg = cls()
        fill(msg, rng, 0)
        print(msg.SerializeToString().hex())


def as_dict(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def check(cases_path):
    with open(cases_path) as f:
        cases = json.load(f)
    writer = load(*cases["writer"])
    reader = load(*cases["reader"])
    failures = []
    for i, item in enumerate(cases["items"]):
        original = bytes.fromhex(item["original"])
        transcoded = bytes.fromhex(item["transcoded"])
        mode = item["mode"]
        expect = reader.FromString(original)
        got = reader.FromString(transcoded)
        problems = []
        if as_dict(expect) != as_dict(got):
            problems.append({"dict_expected": as_dict(expect), "dict_got": as_dict(got)})
        if mode == "preserve":
            if expect.SerializeToString(deterministic=True) != got.SerializeToString(deterministic=True):
                problems.append("serialization (with unknown fields) differs")
            # A reader that re-encodes must hand the writer its message back, unless a value
            # did not fit the reader's type: that is what "narrowed" (reported by
            # schemabridge) must mean, no more and no less.
            round_trips = writer.FromString(got.SerializeToString()) == writer.FromString(original)
            if round_trips == item["narrowed"]:
                problems.append(
                    "reported narrowed, but the reader's re-encoding round-trips"
                    if round_trips
                    else "a reader's re-encoding does not give the writer its message back"
                )
        else:
            expect.DiscardUnknownFields()
            if expect.SerializeToString(deterministic=True) != got.SerializeToString(deterministic=True):
                problems.append("serialization differs from the original without unknown fields")
            clean = reader.FromString(transcoded)
            clean.DiscardUnknownFields()
            if clean.SerializeToString(deterministic=True) != got.SerializeToString(deterministic=True):
                problems.append("unknown fields left under drop")
        if problems:
            failures.append({"item": i, "mode": mode, "original": item["original"], "problems": problems})
    print(json.dumps({"checked": len(cases["items"]), "failures": failures[:5], "failed": len(failures)}, default=str))
    return 1 if failures else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "gen" and len(argv) == 6:
        gen(argv[2], argv[3], int(argv[4]), int(argv[5]))
        return 0
    if len(argv) == 3 and argv[1] == "check":
        return check(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
