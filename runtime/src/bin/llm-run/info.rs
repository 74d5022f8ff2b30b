//! `llm-run info`: what a model file holds, and with `--verify` whether every
//! tensor's bytes still match their checksum.

use clap::Args;
use llm_format::Value;
use std::path::PathBuf;

/// Arguments of `llm-run info`.
#[derive(Args)]
pub struct InfoArgs {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Check every tensor's checksum (reads the whole file).
    #[arg(long)]
    verify: bool,
    /// List every tensor (default: the first layer's and the global ones).
    #[arg(long)]
    all: bool,
}

fn show(v: &Value<'_>) -> String {
    match v {
        Value::Str(s) if s.len() > 120 => {
            let head: String = s.chars().take(100).collect();
            format!("\"{}…\" ({} bytes)", head.escape_debug(), s.len())
        }
        Value::Str(s) => format!("\"{}\"", s.escape_debug()),
        Value::Array(a) => format!(
            "[{} × {}]",
            a.len(),
            a.first().map_or("?", |x| x.type_name())
        ),
        Value::F32(x) => format!("{x}"),
        Value::F64(x) => format!("{x}"),
        Value::Bool(b) => format!("{b}"),
        other => other
            .as_i64()
            .map_or_else(|| format!("{other:?}"), |x| x.to_string()),
    }
}

/// Runs the command.
pub fn run(a: InfoArgs) -> Result<(), String> {
    let model = crate::load(&a.model)?;
    let file = model.file().map_err(|e| e.to_string())?;
    let o = &model.opts;
    println!("file:        {}", a.model.display());
    println!("size:        {} bytes", model.bytes().len());
    println!("version:     {}", file.version());
    println!(
        "model:       {} layers, d_model {}, {} heads ({} kv), d_ff {}, vocab {}, context {}",
        o.n_layers, o.d_model, o.n_heads, o.n_kv_heads, o.d_ff, o.vocab_size, o.max_len
    );
    println!(
        "options:     positions {}, norm {} (eps {}), mlp {}, bias {}, tied {}, rope base {}",
        o.positions.name(),
        o.norm.name(),
        o.norm_eps,
        o.mlp.name(),
        o.bias,
        o.tied_embeddings,
        o.rope_base
    );
    println!("parameters:  {}", o.n_params());
    let t = &model.tokenizer;
    println!(
        "tokenizer:   {} tokens, {:?}, pre-tokenizer {}, bos {:?}, eos {:?}, add_bos {}, add_eos {}",
        t.vocab_size(),
        t.kind(),
        t.pre_tokenizer().unwrap_or("none"),
        t.bos(),
        t.eos(),
        t.add_bos(),
        t.add_eos()
    );
    println!("metadata:");
    for (k, v) in file.metadata() {
        println!("  {k:<28} {}", show(v));
    }
    println!("tensors:     {}", file.tensors().len());
    // The mixture: how many tensors and bytes each dtype holds (a llama.cpp Q4_K_M
    // file, say, is mostly Q4_K with some Q6_K).
    let mut mix: Vec<(llm_format::DType, usize, u64)> = Vec::new();
    for ti in file.tensors() {
        match mix.iter_mut().find(|m| m.0 == ti.dtype) {
            Some(m) => {
                m.1 += 1;
                m.2 += ti.size;
            }
            None => mix.push((ti.dtype, 1, ti.size)),
        }
    }
    mix.sort_by_key(|m| std::cmp::Reverse(m.2));
    let total: u64 = mix.iter().map(|m| m.2).sum::<u64>().max(1);
    let parts: Vec<String> = mix
        .iter()
        .map(|(d, n, b)| format!("{d} {n} ({:.1}%)", 100.0 * *b as f64 / total as f64))
        .collect();
    println!("dtypes:      {}", parts.join(", "));
    // Layouts other than plain rows (`llm-train quantize --layout`).
    let mut layouts: Vec<(llm_format::Layout, usize)> = Vec::new();
    for ti in file.tensors() {
        match layouts.iter_mut().find(|l| l.0 == ti.layout) {
            Some(l) => l.1 += 1,
            None => layouts.push((ti.layout, 1)),
        }
    }
    let parts: Vec<String> = layouts
        .iter()
        .map(|(l, n)| format!("{} {n}", l.name()))
        .collect();
    println!("layouts:     {}", parts.join(", "));
    for ti in file.tensors() {
        let global = !ti.name.starts_with("blk.") || ti.name.starts_with("blk.0.");
        if a.all || global {
            let shape: Vec<String> = ti.shape.iter().map(|d| d.to_string()).collect();
            let layout = match ti.layout {
                llm_format::Layout::Rows => String::new(),
                l => format!(" layout {}", l.name()),
            };
            println!(
                "  {:<28} {:<6} [{}] {} bytes{layout}",
                ti.name,
                ti.dtype.name(),
                shape.join(", "),
                ti.size
            );
        }
    }
    if a.verify {
        file.verify_all().map_err(|e| e.to_string())?;
        println!(
            "verify:      all {} tensor checksums match",
            file.tensors().len()
        );
    }
    Ok(())
}
