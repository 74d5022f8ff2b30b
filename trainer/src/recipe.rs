//! Which dtype each weight matrix gets: one dtype for all (`--dtype q8_0`), or one of
//! llama.cpp's K-quant mixtures (`--dtype q4_k_m`), which keep more bits where the
//! model is most sensitive (the output matrix, some layers' `attn_v` and `ffn_down`).
//!
//! The mixtures follow `llama_tensor_get_type` in llama.cpp's `llama-quant.cpp` for the
//! llama architecture without experts, so a model quantised here gets the same types
//! per tensor as `llama-quantize` gives it, including the fallback for rows that are
//! not a multiple of 256 (Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0,
//! then f16).
//! `tests/quant_recipes.rs` checks the plan against `llama-quantize`'s choices.

use llm_format::{DType, ModelOptions};

/// A llama.cpp quantisation mixture ("file type"): a base K-quant plus upgrades.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mixture {
    /// `Q2_K`: Q2_K, with Q3_K/Q4_K for `attn_v`, Q3_K for `ffn_down` and `attn_out`.
    Q2K,
    /// `Q3_K_S`: Q3_K throughout.
    Q3KS,
    /// `Q3_K_M`: Q3_K, `attn_v` Q5_K/Q4_K, `ffn_down` Q5_K/Q4_K, `attn_out` Q4_K.
    Q3KM,
    /// `Q3_K_L`: Q3_K, `attn_v`, `ffn_down` and `attn_out` Q5_K.
    Q3KL,
    /// `Q4_K_S`: Q4_K, the first layers' `attn_v` and `ffn_down` Q5_K.
    Q4KS,
    /// `Q4_K_M`: Q4_K, some layers' `attn_v` and `ffn_down` Q6_K.
    Q4KM,
    /// `Q5_K_S`: Q5_K throughout.
    Q5KS,
    /// `Q5_K_M`: Q5_K, some layers' `attn_v` and `ffn_down` Q6_K.
    Q5KM,
    /// `Q6_K`: Q6_K throughout.
    Q6K,
}

impl Mixture {
    /// Every mixture with its command-line name.
    pub const ALL: [(Mixture, &'static str); 9] = [
        (Mixture::Q2K, "q2_k"),
        (Mixture::Q3KS, "q3_k_s"),
        (Mixture::Q3KM, "q3_k_m"),
        (Mixture::Q3KL, "q3_k_l"),
        (Mixture::Q4KS, "q4_k_s"),
        (Mixture::Q4KM, "q4_k_m"),
        (Mixture::Q5KS, "q5_k_s"),
        (Mixture::Q5KM, "q5_k_m"),
        (Mixture::Q6K, "q6_k"),
    ];

    /// The command-line name (`q4_k_m`).
    pub fn name(self) -> &'static str {
        Mixture::ALL
            .iter()
            .find(|(m, _)| *m == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// The dtype of every matrix without a rule of its own.
    fn base(self) -> DType {
        match self {
            Mixture::Q2K => DType::Q2_K,
            Mixture::Q3KS | Mixture::Q3KM | Mixture::Q3KL => DType::Q3_K,
            Mixture::Q4KS | Mixture::Q4KM => DType::Q4_K,
            Mixture::Q5KS | Mixture::Q5KM => DType::Q5_K,
            Mixture::Q6K => DType::Q6_K,
        }
    }
}

/// What `--dtype` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantPlan {
    /// Every matrix in one dtype.
    Uniform(DType),
    /// A llama.cpp mixture.
    Mixture(Mixture),
}

/// The role of a matrix, from its canonical name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Output,
    TokEmb,
    AttnV,
    AttnOut,
    FfnDown,
    Other,
}

fn role(name: &str) -> (Role, Option<usize>) {
    if name == "output.weight" {
        return (Role::Output, None);
    }
    if name == "tok_emb" {
        return (Role::TokEmb, None);
    }
    let layer = name
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, _)| l.parse().ok());
    let r = if name.ends_with(".attn_v.weight") {
        Role::AttnV
    } else if name.ends_with(".attn_out.weight") {
        Role::AttnOut
    } else if name.ends_with(".mlp_down.weight") {
        Role::FfnDown
    } else {
        Role::Other
    };
    (r, layer)
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every
/// third layer in between.
fn use_more_bits(l: usize, n: usize) -> bool {
    l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2
}

/// The type a 256-block type falls back to for rows that are not a multiple of 256
/// (`tensor_type_fallback`), then f16 if even that does not divide the rows.
fn fallback(dtype: DType, cols: usize) -> DType {
    if cols % dtype.block_len() == 0 {
        return dtype;
    }
    let f = match dtype {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        DType::IQ4_XS => DType::IQ4_NL,
        d => d,
    };
    if cols % f.block_len() == 0 {
        f
    } else {
        DType::F16
    }
}

impl QuantPlan {
    /// Parses a dtype name (`q8_0`) or a mixture name (`q4_k_m`). The K-quant names
    /// `q2_k`, `q3_k`, `q4_k`, `q5_k` and `q6_k` mean llama.cpp's mixtures (`q3_k` and
    /// `q4_k`, `q5_k` as their `_m` variants, as `llama-quantize` reads them);
    /// every other dtype is uniform.
    pub fn parse(s: &str) -> Result<QuantPlan, String> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "q3_k" => "q3_k_m",
            "q4_k" => "q4_k_m",
            "q5_k" => "q5_k_m",
            x => x,
        };
        if let Some((m, _)) = Mixture::ALL.iter().find(|(_, n)| *n == alias) {
            return Ok(QuantPlan::Mixture(*m));
        }
        match DType::from_name(&s) {
            Some(d) => Ok(QuantPlan::Uniform(d)),
            _ => {
                let mixes: Vec<&str> = Mixture::ALL.iter().map(|(_, n)| *n).collect();
                let plain: Vec<&str> = DType::ALL
                    .iter()
                    .map(|d| d.name())
                    .filter(|n| !mixes.contains(n))
                    .collect();
                Err(format!(
                    "unknown dtype '{s}' (expected one of {}, or a mixture: {})",
                    plain.join(", "),
                    mixes.join(", ")
                ))
            }
        }
    }

    /// The name as given on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            QuantPlan::Uniform(d) => d.name(),
            QuantPlan::Mixture(m) => m.name(),
        }
    }

    /// The dtype for the matrix `name` (canonical, e.g. `blk.3.attn_v.weight`) whose
    /// rows hold `cols` values, in a model with options `opts`. A uniform plan gives
    /// its dtype whatever the shape (the caller decides what to do with rows that do
    /// not fit its blocks); a mixture applies llama.cpp's rules and fallbacks.
    pub fn dtype_for(&self, name: &str, cols: usize, opts: &ModelOptions) -> DType {
        let m = match self {
            QuantPlan::Uniform(d) => return *d,
            QuantPlan::Mixture(m) => *m,
        };
        let (role, layer) = role(name);
        let n = opts.n_layers;
        let l = layer.unwrap_or(0);
        let gqa = opts.n_heads / opts.n_kv_heads.max(1);
        let base = m.base();
        let t = match role {
            // The output matrix (and a tied embedding, which is the output too).
            Role::Output => output_type(base, cols),
            Role::TokEmb if opts.tied_embeddings => output_type(base, cols),
            Role::AttnV => match m {
                Mixture::Q2K if gqa >= 4 => DType::Q4_K,
                Mixture::Q2K => DType::Q3_K,
                Mixture::Q3KM if l < 2 => DType::Q5_K,
                Mixture::Q3KM => DType::Q4_K,
                Mixture::Q3KL => DType::Q5_K,
                Mixture::Q4KM | Mixture::Q5KM if use_more_bits(l, n) => DType::Q6_K,
                Mixture::Q4KS if l < 4 => DType::Q5_K,
                _ => base,
            },
            Role::FfnDown => match m {
                Mixture::Q2K => DType::Q3_K,
                Mixture::Q3KM if l < n / 16 => DType::Q5_K,
                Mixture::Q3KM => DType::Q4_K,
                Mixture::Q3KL => DType::Q5_K,
                Mixture::Q4KM | Mixture::Q5KM if use_more_bits(l, n) => DType::Q6_K,
                Mixture::Q4KS if l < n / 8 => DType::Q5_K,
                _ => base,
            },
            Role::AttnOut => match m {
                Mixture::Q2K => DType::Q3_K,
                Mixture::Q3KM => DType::Q4_K,
                Mixture::Q3KL => DType::Q5_K,
                _ => base,
            },
            Role::TokEmb | Role::Other => base,
        };
        fallback(t, cols)
    }
}

/// The output matrix: Q8_0 if its rows do not fit the base type's blocks, else Q6_K.
fn output_type(base: DType, cols: usize) -> DType {
    if cols % base.block_len() != 0 {
        DType::Q8_0
    } else {
        DType::Q6_K
    }
}

impl From<DType> for QuantPlan {
    fn from(d: DType) -> QuantPlan {
        QuantPlan::Uniform(d)
    }
}

impl std::fmt::Display for QuantPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dtypes_and_mixtures() {
        assert_eq!(
            QuantPlan::parse("Q8_0"),
            Ok(QuantPlan::Uniform(DType::Q8_0))
        );
        assert_eq!(
            QuantPlan::parse("q4_k_m"),
            Ok(QuantPlan::Mixture(Mixture::Q4KM))
        );
        assert_eq!(
            QuantPlan::parse("q4_k"),
            Ok(QuantPlan::Mixture(Mixture::Q4KM))
        );
        assert_eq!(
            QuantPlan::parse("iq4_nl"),
            Ok(QuantPlan::Uniform(DType::IQ4_NL))
        );
        let e = QuantPlan::parse("q7_k").unwrap_err();
        assert!(e.contains("q4_k_m") && e.contains("q8_0"), "{e}");
    }

    #[test]
    fn use_more_bits_is_llama_cpps() {
        // n = 12: layers 0 (< 1), 11 (>= 10) and every third from 1: 3, 6, 9.
        let got: Vec<usize> = (0..12).filter(|&l| use_more_bits(l, 12)).collect();
        assert_eq!(got, [0, 3, 6, 9, 10, 11]);
    }
}
