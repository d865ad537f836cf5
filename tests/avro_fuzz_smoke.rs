//! Corpus-free smoke run of the `transcode` fuzz target (fuzz/src/cases.rs, included by path):
//! 200,000 deterministic inputs, random bytes and mutations of valid datums, through every fixed
//! plan. Checks no panic and the target's own promises (output decodes with the reader
//! schema, `out` untouched on error, prefix/whole agreement). The real fuzzer runs the same
//! function: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run transcode`.
//!
//! Each input is also given to the identity plan of its case's writer schema (what the gateway
//! forwards unchanged after `Plan::validate`): `validate` must give exactly the verdict of an
//! identity `transcode`, the same error included, and accept every valid datum.

use schemabridge::{avro, bench};

#[allow(dead_code)]
#[path = "../fuzz/src/cases.rs"]
mod cases;

use bench::Rng;

const INPUTS: usize = 200_000;

/// One mutation of `v`, in the spirit of libFuzzer's: byte flips, boundary values, truncation,
/// insertion, deletion, duplication and big varints.
fn mutate(v: &mut Vec<u8>, rng: &mut Rng) {
    let at = |rng: &mut Rng, len: usize| (rng.next_u64() as usize) % len.max(1);
    match rng.next_u64() % 8 {
        0 if !v.is_empty() => {
            let i = at(rng, v.len());
            v[i] ^= 1 << (rng.next_u64() % 8);
        }
        1 if !v.is_empty() => {
            let i = at(rng, v.len());
            v[i] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff][at(rng, 7)];
        }
        2 => {
            let n = at(rng, v.len() + 1);
            v.truncate(n);
        }
        3 => {
            let i = at(rng, v.len() + 1);
            v.insert(i, rng.next_u64() as u8);
        }
        4 if !v.is_empty() => {
            let i = at(rng, v.len());
            v.remove(i);
        }
        5 if v.len() > 1 => {
            let i = at(rng, v.len());
            let n = at(rng, (v.len() - i).min(16)) + 1;
            let chunk: Vec<u8> = v[i..i + n].to_vec();
            let j = at(rng, v.len() + 1);
            v.splice(j..j, chunk);
        }
        6 => {
            // A huge or negative varint (count, length, index) somewhere.
            let i = at(rng, v.len() + 1);
            let big: &[u8] = [
                &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                &[0xff; 10][..],
                &[0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01][..],
                &[0x01][..],
                &[0x03][..],
            ][at(rng, 5)];
            v.splice(i..i, big.iter().copied());
        }
        _ => {
            let i = at(rng, v.len() + 1);
            v.insert(i, 0);
        }
    }
}

#[test]
fn fuzz_target_smoke_run() {
    // apache-avro's decoder (used to check outputs) recurses per nesting level; give it room.
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(smoke)
        .expect("spawn the smoke run");
    worker.join().expect("the smoke run must not panic");
}

fn smoke() {
    let t = cases::targets();
    let n = t.cases.len();
    // Valid datums of each writer schema, the seeds of the mutations.
    let seeds: Vec<Vec<Vec<u8>>> = t
        .cases
        .iter()
        .enumerate()
        .map(|(i, c)| bench::random_datums(c.writer, 40, i as u64).expect("datums"))
        .collect();
    // Writer = reader: the plans whose datums the gateway forwards after `validate` alone.
    let identities: Vec<avro::Plan> = t
        .cases
        .iter()
        .map(|c| avro::compile(c.writer, c.writer).expect("identity plan"))
        .collect();
    let mut copy = Vec::with_capacity(1024);
    let mut rng = Rng(0x5eed);
    let mut ok = vec![0usize; n];
    let mut err = vec![0usize; n];
    let mut data = Vec::with_capacity(1024);
    // The zero-byte-items plan may loop up to `avro::MAX_ZERO_SIZE_ITEMS` times per datum,
    // slow in a debug build: it gets a quarter of an equal share.
    let zero = t
        .cases
        .iter()
        .position(|c| c.name == "zero-byte items")
        .expect("the zero-byte case");
    for k in 0..INPUTS {
        let mut pick = k % n;
        if pick == zero && (k / n) % 4 != 0 {
            pick = (pick + 1 + (k / n) % (n - 1)) % n;
        }
        data.clear();
        data.push(pick as u8);
        match k % 10 {
            // Random bytes.
            0 | 1 => {
                let len = (rng.next_u64() % 64) as usize;
                data.extend((0..len).map(|_| rng.next_u64() as u8));
            }
            // A valid datum, untouched (must transcode).
            2 => {
                let s = &seeds[pick];
                data.extend_from_slice(&s[(rng.next_u64() as usize) % s.len()]);
            }
            // A valid datum with one to four mutations.
            _ => {
                let s = &seeds[pick];
                let mut v = s[(rng.next_u64() as usize) % s.len()].clone();
                for _ in 0..1 + rng.next_u64() % 4 {
                    mutate(&mut v, &mut rng);
                }
                data.extend_from_slice(&v);
            }
        }
        let valid = k % 10 == 2;
        let transcoded = cases::run(&t, &data);
        assert!(
            transcoded || !valid,
            "{}: a valid datum failed to transcode",
            t.cases[pick].name
        );
        let identity = &identities[pick];
        let input = &data[1..];
        copy.clear();
        let copied = identity.transcode(input, &mut copy).map(|_| ());
        let validated = identity.validate(input);
        assert_eq!(
            validated, copied,
            "{}: validate and an identity transcode disagree on {input:02x?}",
            t.cases[pick].name
        );
        assert!(
            validated.is_ok() || !valid,
            "{}: a valid datum failed to validate",
            t.cases[pick].name
        );
        if transcoded {
            ok[pick] += 1;
        } else {
            err[pick] += 1;
        }
    }
    for (i, c) in t.cases.iter().enumerate() {
        assert!(
            ok[i] > INPUTS / n / 50 && err[i] > INPUTS / n / 50,
            "{}: {} transcoded, {} rejected: the inputs should give plenty of both",
            c.name,
            ok[i],
            err[i]
        );
    }
}
