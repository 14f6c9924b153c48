//! SHA-256 as the guests compute it.
//!
//! [`Sha256`] is the `sha2` crate's hasher on the host, and [`Rv64Sha256`] in
//! a riscv64 guest. Both implement [`Digest`]; only the compression function
//! differs. `sha2`'s portable compression spends 40% of its 4,300
//! instructions per block on rotates when built for riscv64imac, which has
//! no rotate instruction: three instructions each. Hashing the image is half
//! of a node's work while it receives, so this compression function is written for such a
//! core: it doubles a word into both halves of a 64-bit register once, and
//! each of a Σ's three rotates is then one shift (about 3,400 instructions
//! per block). `sha2` still buffers and pads, through `digest`'s core API,
//! and the tests check [`Rv64Sha256`] against `sha2` on the host.

use core::fmt;
use sha2::digest::core_api::{
    AlgorithmName, Block, BlockSizeUser, Buffer, BufferKindUser, CoreWrapper, FixedOutputCore,
    OutputSizeUser, UpdateCore,
};
use sha2::digest::typenum::{U32, U64};
use sha2::digest::{HashMarker, Output};

pub use sha2::Digest;

/// The hasher images are checked with: [`Rv64Sha256`] in a riscv64 guest,
/// `sha2`'s (with the host CPU's SHA instructions where it has them)
/// elsewhere.
#[cfg(target_arch = "riscv64")]
pub type Sha256 = Rv64Sha256;
/// The hasher images are checked with: [`Rv64Sha256`] in a riscv64 guest,
/// `sha2`'s (with the host CPU's SHA instructions where it has them)
/// elsewhere.
#[cfg(not(target_arch = "riscv64"))]
pub type Sha256 = sha2::Sha256;

/// SHA-256 with a compression function for 64-bit cores without a rotate instruction.
pub type Rv64Sha256 = CoreWrapper<Rv64Core>;

/// The block-level half of [`Rv64Sha256`]: `digest`'s wrapper buffers.
#[derive(Clone)]
pub struct Rv64Core {
    state: [u32; 8],
    blocks: u64,
}

/// FIPS 180-4's initial hash value for SHA-256.
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// FIPS 180-4's round constants.
#[rustfmt::skip]
const K: [u32; 64] = [
    0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
    0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
    0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
    0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
    0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
    0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
    0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
    0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
];

/// `x` in both halves: bits `n..n + 32` of the result are `x` rotated right
/// by `n`, so three rotates of one word cost one doubling and three shifts.
#[inline(always)]
fn doubled(x: u32) -> u64 {
    u64::from(x) | (u64::from(x) << 32)
}

#[inline(always)]
fn big_sigma0(a: u32) -> u32 {
    let d = doubled(a);
    ((d >> 2) ^ (d >> 13) ^ (d >> 22)) as u32
}

#[inline(always)]
fn big_sigma1(e: u32) -> u32 {
    let d = doubled(e);
    ((d >> 6) ^ (d >> 11) ^ (d >> 25)) as u32
}

#[inline(always)]
fn small_sigma0(w: u32) -> u32 {
    let d = doubled(w);
    ((d >> 7) ^ (d >> 18)) as u32 ^ (w >> 3)
}

#[inline(always)]
fn small_sigma1(w: u32) -> u32 {
    let d = doubled(w);
    ((d >> 17) ^ (d >> 19)) as u32 ^ (w >> 10)
}

/// One block into `state`.
///
/// The schedule is expanded first and the rounds run eight to a loop pass:
/// fully unrolled, the compiler's schedule spilled about 500 registers per
/// block on riscv64.
// Out of line, in the guests' `.text.hot` page (see `board::linker`).
#[inline(never)]
#[unsafe(link_section = ".text.hot")]
fn compress_block(state: &mut [u32; 8], block: &[u8; 64]) {
    let mut w = [0u32; 64];
    for (w, word) in w.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for i in 16..64 {
        w[i] = w[i - 16]
            .wrapping_add(small_sigma0(w[i - 15]))
            .wrapping_add(w[i - 7])
            .wrapping_add(small_sigma1(w[i - 2]));
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    // Maj(a, b, c) = ((a ^ b) & (b ^ c)) ^ b, and this round's b ^ c is the
    // last round's a ^ b.
    let mut bc = b ^ c;
    for i in (0..64).step_by(8) {
        // A round with the variables named in their places: rather than
        // moving all eight, the next round names them one place on.
        macro_rules! round {
            ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $j:expr) => {
                let t1 = $h
                    .wrapping_add(big_sigma1($e))
                    .wrapping_add($g ^ ($e & ($f ^ $g)))
                    .wrapping_add(K[i + $j])
                    .wrapping_add(w[i + $j]);
                let ab = $a ^ $b;
                let maj = (ab & bc) ^ $b;
                bc = ab;
                $d = $d.wrapping_add(t1);
                $h = t1.wrapping_add(big_sigma0($a)).wrapping_add(maj);
            };
        }
        round!(a, b, c, d, e, f, g, h, 0);
        round!(h, a, b, c, d, e, f, g, 1);
        round!(g, h, a, b, c, d, e, f, 2);
        round!(f, g, h, a, b, c, d, e, 3);
        round!(e, f, g, h, a, b, c, d, 4);
        round!(d, e, f, g, h, a, b, c, 5);
        round!(c, d, e, f, g, h, a, b, 6);
        round!(b, c, d, e, f, g, h, a, 7);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

/// SHA-256("abc"), FIPS 180-2 appendix B.1.
const ABC: [u8; 32] =
    crate::hex::hex32("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

/// Whether [`Sha256`] gives FIPS 180-2's digest of "abc", fed as "ab" then
/// "c" and finished from a clone, as the boot ROM's receiver feeds and
/// finishes it. A boot ROM runs it while it waits for its image.
pub fn known_answer_test() -> bool {
    answers(b"ab", b"c", &ABC)
}

/// Whether SHA-256 over `a` then `b`, as two updates finished from a clone,
/// gives `digest`.
fn answers(a: &[u8], b: &[u8], digest: &[u8; 32]) -> bool {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.clone().finalize()[..] == digest[..]
}

impl HashMarker for Rv64Core {}

impl BlockSizeUser for Rv64Core {
    type BlockSize = U64;
}

impl BufferKindUser for Rv64Core {
    type BufferKind = sha2::digest::block_buffer::Eager;
}

impl OutputSizeUser for Rv64Core {
    type OutputSize = U32;
}

impl Default for Rv64Core {
    fn default() -> Self {
        Rv64Core {
            state: H0,
            blocks: 0,
        }
    }
}

impl UpdateCore for Rv64Core {
    #[inline]
    fn update_blocks(&mut self, blocks: &[Block<Self>]) {
        self.blocks += blocks.len() as u64;
        for block in blocks {
            compress_block(&mut self.state, block.as_ref());
        }
    }
}

impl FixedOutputCore for Rv64Core {
    fn finalize_fixed_core(&mut self, buffer: &mut Buffer<Self>, out: &mut Output<Self>) {
        let bits = 8 * (self.blocks * 64 + buffer.get_pos() as u64);
        let state = &mut self.state;
        buffer.len64_padding_be(bits, |block| compress_block(state, block.as_ref()));
        for (bytes, v) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&v.to_be_bytes());
        }
    }
}

impl sha2::digest::Reset for Rv64Core {
    fn reset(&mut self) {
        *self = Rv64Core::default();
    }
}

impl AlgorithmName for Rv64Core {
    fn write_alg_name(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha256")
    }
}

impl fmt::Debug for Rv64Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rv64Core { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// FIPS 180-2's examples; the second (56 bytes) leaves no room for the
    /// length in its first padded block.
    #[test]
    fn the_fips_examples() {
        let cases: [(&[u8], [u8; 32]); 2] = [
            (b"abc", ABC),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                crate::hex::hex32(
                    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                ),
            ),
        ];
        for (data, digest) in cases {
            let d: [u8; 32] = Rv64Sha256::digest(data).into();
            assert_eq!(d, digest);
        }
    }

    #[test]
    fn the_known_answer_test_passes_and_can_fail() {
        assert!(known_answer_test());
        assert!(answers(b"a", b"bc", &ABC));
        // Another message, or another digest, fails.
        assert!(!answers(b"ab", b"d", &ABC));
        let mut wrong = ABC;
        wrong[31] ^= 1;
        assert!(!answers(b"ab", b"c", &wrong));
    }

    proptest! {
        /// Any bytes, fed in any two pieces, hash as `sha2` hashes them.
        #[test]
        fn agrees_with_sha2(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let cut = cut.min(data.len());
            let mut h = Rv64Sha256::new();
            h.update(&data[..cut]);
            h.update(&data[cut..]);
            prop_assert_eq!(h.finalize(), sha2::Sha256::digest(&data));
        }

        /// The compression function alone, from any state.
        #[test]
        fn compress_agrees_with_sha2(state in any::<[u32; 8]>(), block in any::<[u8; 64]>()) {
            let (mut ours, mut theirs) = (state, state);
            compress_block(&mut ours, &block);
            let block = sha2::digest::generic_array::GenericArray::from(block);
            sha2::compress256(&mut theirs, &[block]);
            prop_assert_eq!(ours, theirs);
        }
    }
}
