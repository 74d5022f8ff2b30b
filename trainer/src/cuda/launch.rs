//! The host-side arithmetic of the trainer's kernels: the attention tiling, chunking of
//! column reductions, the embedding gradient's bucketing of positions by token, RoPE
//! tables and AdamW's bias corrections; plain CPU logic, tested without a GPU. The
//! generic launch plumbing (grid sizing, argument checks, the [`Launch`] builder) is
//! `llmrt_cuda::launch`, re-exported here.

pub use llmrt_cuda::launch::*;

use super::error::CudaError;
use crate::layers::rope::Rope;
use cudarc::driver::LaunchConfig;

/// How a column reduction over `rows` rows is split: `(chunks, rows_per_chunk)`, at most
/// 128 chunks of at least 32 rows, so partials stay small and each thread loops a while.
pub fn column_chunks(rows: usize) -> (usize, usize) {
    let per = ceil_div(rows.max(1), 128).max(32);
    (ceil_div(rows.max(1), per), per)
}

/// The grid of a column reduction over `[rows, cols]`: `(ceil(cols/BLOCK), chunks)`.
pub fn column_grid(rows: usize, cols: usize) -> Result<LaunchConfig, CudaError> {
    let (chunks, _) = column_chunks(rows);
    Ok(LaunchConfig {
        grid_dim: (
            grid_dim(ceil_div(cols.max(1), BLOCK as usize), "columns")?,
            grid_dim(chunks, "row chunks")?.min(65535),
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Dimensions each attention lane holds (`DPT` in attention.cu).
pub const ATTN_DPT: usize = 8;
/// Threads per attention block.
pub const ATTN_BLOCK: usize = 128;

/// The tiling of attention.cu for one head size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnGeometry {
    /// Lanes per row (a power of two, `group * DPT >= head_dim`).
    pub group: usize,
    /// `group * DPT`: the head size padded with zeros.
    pub hd_pad: usize,
    /// Rows (queries, or keys in the dk/dv pass) per block: `ATTN_BLOCK / group`.
    pub rows_per_block: usize,
    /// Rows per shared-memory tile (Bc): `4096 / hd_pad` clamped to 8..=64.
    pub tile: usize,
}

impl AttnGeometry {
    /// The tiling for `head_dim` (1..=256).
    pub fn new(head_dim: usize) -> Result<Self, CudaError> {
        if head_dim == 0 || head_dim > 32 * ATTN_DPT {
            return Err(CudaError::Shape(format!(
                "attention head_dim {head_dim} is outside 1..={}",
                32 * ATTN_DPT
            )));
        }
        let group = ceil_div(head_dim, ATTN_DPT).next_power_of_two();
        let hd_pad = group * ATTN_DPT;
        Ok(AttnGeometry {
            group,
            hd_pad,
            rows_per_block: ATTN_BLOCK / group,
            tile: (4096 / hd_pad).clamp(8, 64),
        })
    }

    /// Dynamic shared memory of the forward and dq kernels: two tiles.
    pub fn smem_forward(&self) -> u32 {
        (2 * self.tile * self.hd_pad * 4) as u32
    }

    /// Dynamic shared memory of the dk/dv kernel: two tiles plus lse and D.
    pub fn smem_dkv(&self) -> u32 {
        ((2 * self.tile * self.hd_pad + 2 * self.tile) * 4) as u32
    }

    /// Grid `(ceil(T / rows_per_block), heads, B)`.
    pub fn config(
        &self,
        t: usize,
        heads: usize,
        b: usize,
        smem: u32,
    ) -> Result<LaunchConfig, CudaError> {
        if heads > 65535 || b > 65535 {
            return Err(CudaError::Shape(format!(
                "attention grid: {heads} heads x batch {b} exceeds 65535"
            )));
        }
        Ok(LaunchConfig {
            grid_dim: (
                grid_dim(ceil_div(t.max(1), self.rows_per_block), "attention")?,
                heads as u32,
                b as u32,
            ),
            block_dim: (ATTN_BLOCK as u32, 1, 1),
            shared_mem_bytes: smem,
        })
    }
}

/// Positions grouped by token, for the deterministic embedding gradient: bucket `u`
/// holds positions `order[start[u]..start[u+1]]`, all of token `token[u]`, in increasing
/// position order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBuckets {
    /// Positions sorted by (token, position).
    pub order: Vec<i32>,
    /// Bucket boundaries into `order`, `buckets + 1` entries.
    pub start: Vec<i32>,
    /// The token of each bucket.
    pub token: Vec<i32>,
}

impl TokenBuckets {
    /// Buckets `tokens`; a token outside `0..vocab` is an error naming its position.
    pub fn build(tokens: &[i32], vocab: usize) -> Result<Self, CudaError> {
        check_tokens(tokens, vocab, "token")?;
        if tokens.len() > i32::MAX as usize {
            return Err(CudaError::Shape(format!(
                "{} tokens is too many",
                tokens.len()
            )));
        }
        let mut order: Vec<i32> = (0..tokens.len() as i32).collect();
        order.sort_by_key(|&p| (tokens[p as usize], p));
        let (mut start, mut token) = (Vec::new(), Vec::new());
        for (i, &p) in order.iter().enumerate() {
            let t = tokens[p as usize];
            if token.last() != Some(&t) {
                start.push(i as i32);
                token.push(t);
            }
        }
        start.push(order.len() as i32);
        Ok(TokenBuckets {
            order,
            start,
            token,
        })
    }
}

/// Checks every token is in `0..vocab`; the error names the first bad position.
pub fn check_tokens(tokens: &[i32], vocab: usize, what: &str) -> Result<(), CudaError> {
    match tokens.iter().position(|&t| t < 0 || t as usize >= vocab) {
        Some(p) => Err(CudaError::Shape(format!(
            "{what} {} at position {p} is outside the vocabulary 0..{vocab}",
            tokens[p]
        ))),
        None => Ok(()),
    }
}

/// RoPE's `(cos, sin)` tables `[max_len, head_dim/2]`, computed in f64:
/// angle `(pos / scale) * base^(-2i/head_dim)` ([`Rope::angle`]).
pub fn rope_tables(max_len: usize, head_dim: usize, rope: Rope) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(max_len * half);
    let mut sin = Vec::with_capacity(max_len * half);
    for pos in 0..max_len {
        for i in 0..half {
            let a = rope.angle(pos, i, head_dim);
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// AdamW's bias corrections `(1 - beta1^step, 1 - beta2^step)` for `step >= 1`.
pub fn adam_bias_corrections(beta1: f32, beta2: f32, step: u32) -> (f32, f32) {
    let s = step.max(1) as i32;
    (
        (1.0 - (beta1 as f64).powi(s)) as f32,
        (1.0 - (beta2 as f64).powi(s)) as f32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_geometry_covers_the_head() {
        for hd in 1..=256 {
            let g = AttnGeometry::new(hd).unwrap();
            assert!(
                g.hd_pad >= hd && g.hd_pad < 2 * hd.max(ATTN_DPT),
                "hd {hd}: {g:?}"
            );
            assert!(g.group.is_power_of_two() && g.group <= 32);
            assert_eq!(ATTN_BLOCK % g.group, 0);
            assert!((8..=64).contains(&g.tile));
            assert!(g.smem_dkv() <= 48 * 1024, "hd {hd}: smem {}", g.smem_dkv());
        }
        assert!(AttnGeometry::new(0).is_err());
        assert!(AttnGeometry::new(257).is_err());
        let g = AttnGeometry::new(64).unwrap();
        assert_eq!(
            (g.group, g.hd_pad, g.rows_per_block, g.tile),
            (8, 64, 16, 64)
        );
        let c = g.config(1024, 12, 4, g.smem_forward()).unwrap();
        assert_eq!(c.grid_dim, (64, 12, 4));
    }

    #[test]
    fn column_chunks_cover_the_rows() {
        for rows in [1usize, 31, 32, 33, 4096, 16384, 1 << 20] {
            let (chunks, per) = column_chunks(rows);
            assert!(
                chunks * per >= rows && (chunks - 1) * per < rows,
                "rows {rows}"
            );
            assert!(chunks <= 128);
        }
    }

    #[test]
    fn buckets_group_positions_by_token() {
        let tokens = [5, 2, 5, 7, 2, 5];
        let b = TokenBuckets::build(&tokens, 8).unwrap();
        assert_eq!(b.token, vec![2, 5, 7]);
        assert_eq!(b.start, vec![0, 2, 5, 6]);
        assert_eq!(b.order, vec![1, 4, 0, 2, 5, 3]);
        let e = TokenBuckets::build(&[1, 9], 8).unwrap_err();
        assert!(e.to_string().contains("position 1"), "{e}");
        assert!(TokenBuckets::build(&[-1], 8).is_err());
    }

    #[test]
    fn rope_tables_match_the_convention() {
        let (c, s) = rope_tables(3, 4, Rope::plain(10000.0));
        assert_eq!(c.len(), 6);
        // pos 2, pair 1: angle 2 * 10000^(-2/4) = 0.02
        assert!((c[2 * 2 + 1] - 0.02f32.cos()).abs() < 1e-7);
        assert!((s[2 * 2 + 1] - 0.02f32.sin()).abs() < 1e-7);
        assert_eq!(s[0], 0.0);
        let (b1, b2) = adam_bias_corrections(0.9, 0.999, 2);
        // The betas are f32 (0.999f32 = 0.99900001...), so compare relatively.
        assert!((b1 / 0.19 - 1.0).abs() < 1e-6, "{b1}");
        assert!((b2 / 0.001999 - 1.0).abs() < 2e-5, "{b2}");
    }

    /// Every launcher's argument chain (`Launch::new(.., "kernel")?.ptr(..).i32(..)...
    /// .run(..)`, read from its source) has the kinds and count of the kernel's
    /// parameters, so argument lists are checked without a GPU.
    #[test]
    fn launcher_argument_lists_match_the_kernels() {
        use crate::cuda::kernels::{signature, ParamKind, ALL};
        let launchers = [
            include_str!("activation.rs"),
            include_str!("adamw.rs"),
            include_str!("attention.rs"),
            include_str!("bias_grad.rs"),
            include_str!("cast.rs"),
            include_str!("classifier.rs"),
            include_str!("embedding.rs"),
            include_str!("grad_norm.rs"),
            include_str!("layernorm.rs"),
            include_str!("rmsnorm.rs"),
            include_str!("rope.rs"),
        ];
        let mut checked = 0;
        for src in launchers {
            for part in src.split("Launch::new(").skip(1) {
                let Some(run_at) = part.find(".run(") else {
                    continue;
                };
                let chain = &part[..run_at];
                // The kernel name: the string literal in the call (which ends at `)?`;
                // the variant argument has parentheses of its own), when there is one.
                let call = &chain[..chain.find(")?").unwrap_or(0)];
                let Some(name) = call.split('"').nth(1) else {
                    continue;
                };
                let mut kinds = Vec::new();
                let mut rest = chain;
                while let Some(dot) = rest.find('.') {
                    rest = &rest[dot + 1..];
                    let method: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !rest[method.len()..].starts_with('(') {
                        continue;
                    }
                    kinds.push(match method.as_str() {
                        "ptr" | "out" | "opt" | "raw" | "null" => ParamKind::Ptr,
                        "i32" => ParamKind::I32,
                        "i64" => ParamKind::I64,
                        "f32" => ParamKind::F32,
                        _ => continue,
                    });
                }
                let file = ALL
                    .iter()
                    .find(|f| f.functions.contains(&name))
                    .expect(name);
                assert_eq!(
                    signature(file.source, name),
                    Some(kinds),
                    "launcher of {name}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 25, "only {checked} launches found");
    }
}
