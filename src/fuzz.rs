//! Shared by the fuzz-style property tests: a small deterministic generator and the number
//! of cases to run. `cargo test` runs a bounded number; set `DEADPOOL_FUZZ_CASES` to run
//! them long (see the README).

/// Cases per target: `$DEADPOOL_FUZZ_CASES`, else `default`.
pub fn cases(default: u64) -> u64 {
    std::env::var("DEADPOOL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64: deterministic, seeded by `$DEADPOOL_FUZZ_SEED` when set (to explore further
/// or to replay), so a failure prints the case number that reproduces it.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(salt: u64) -> Rng {
        let seed = std::env::var("DEADPOOL_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Rng((seed ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max as u64 + 1) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Mutates text: flips, inserts, deletes and duplicates bytes and slices.
    pub fn mutate(&mut self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for _ in 0..=self.below(4) {
            let at = if out.is_empty() {
                0
            } else {
                self.below(out.len() as u64) as usize
            };
            match self.below(5) {
                0 if !out.is_empty() => out[at] = self.next() as u8,
                1 => out.insert(
                    at,
                    *self.pick(&[
                        &b'"', &b'[', &b']', &b'=', &b'\n', &b'#', &b'{', &b'\\', &b'0', &b'-',
                    ]),
                ),
                2 if !out.is_empty() => {
                    out.remove(at);
                }
                3 => {
                    let end = (at + self.below(16) as usize).min(out.len());
                    let slice = out[at..end].to_vec();
                    let to = self.below(out.len() as u64 + 1) as usize;
                    out.splice(to..to, slice);
                }
                _ => out.truncate(at),
            }
        }
        out
    }
}
