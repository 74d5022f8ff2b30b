//! What a Hugging Face `tokenizer.json` / `tokenizer_config.json` says beyond the
//! vocabulary: the tokenizer kind (byte-level BPE or byte-fallback BPE, from the
//! pre-tokenizer, decoder and `byte_fallback`), the pre-tokenizer as one of llama.cpp's
//! names (its Split regex compared with the regexes llama.cpp's converter knows), and
//! the BOS/EOS tokens and flags of `tokenizer_config.json`.

use super::ImportError;
use llm_format::{TokenizerKind, TokenizerSpec};
use serde_json::Value as Json;
use std::path::Path;

/// `tokenizer.json` Split regexes (as HF writes them) → llama.cpp's pre-tokenizer name.
const SPLIT_REGEXES: &[(&str, &str)] = &[
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "llama-bpe",
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "qwen2",
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "qwen35",
    ),
    (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "gpt-4o",
    ),
    (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "tekken",
    ),
];

/// The steps of a `pre_tokenizer` (or `decoder`) entry: itself, or a `Sequence`'s list.
fn steps<'j>(v: Option<&'j Json>, list: &str) -> Vec<&'j Json> {
    match v {
        None | Some(Json::Null) => Vec::new(),
        Some(v) if v.get("type").and_then(Json::as_str) == Some("Sequence") => v
            .get(list)
            .and_then(Json::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(v) => vec![v],
    }
}

fn ty(v: &Json) -> &str {
    v.get("type").and_then(Json::as_str).unwrap_or("")
}

/// The kind and pre-tokenizer `tokenizer.json` describes, or `None` when it does not
/// say (no byte-level steps and no `byte_fallback`): the caller's default then.
pub fn kind_and_pre(
    j: &Json,
    file: &str,
) -> Result<Option<(TokenizerKind, Option<String>)>, ImportError> {
    let model = j.get("model");
    let model_type = model.and_then(|m| m.get("type")).and_then(Json::as_str);
    if let Some(t) = model_type.filter(|t| *t != "BPE") {
        return Err(ImportError::unsupported(
            file,
            format!("tokenizer model type '{t}' (only BPE, byte-level or byte-fallback)"),
        ));
    }
    let pre = steps(j.get("pre_tokenizer"), "pretokenizers");
    let dec = steps(j.get("decoder"), "decoders");
    let byte_level = pre.iter().chain(&dec).any(|s| ty(s) == "ByteLevel");
    let byte_fallback = model
        .and_then(|m| m.get("byte_fallback"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if !byte_level {
        return Ok(byte_fallback.then_some((TokenizerKind::SentencePiece, None)));
    }
    let use_regex = |s: &Json| s.get("use_regex").and_then(Json::as_bool).unwrap_or(true);
    let name = match &pre[..] {
        [] => None,
        [b] if ty(b) == "ByteLevel" && use_regex(b) => None,
        [d, b]
            if ty(d) == "Digits"
                && d.get("individual_digits").and_then(Json::as_bool) == Some(true)
                && ty(b) == "ByteLevel"
                && use_regex(b) =>
        {
            Some("smollm".to_string())
        }
        [s, b] if ty(s) == "Split" && ty(b) == "ByteLevel" && !use_regex(b) => {
            let re = s
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Json::as_str)
                .unwrap_or("");
            let name = SPLIT_REGEXES.iter().find(|(r, _)| *r == re).map(|(_, n)| n);
            Some(
                name.ok_or_else(|| {
                    ImportError::unsupported(file, format!("pre-tokenizer Split regex {re:?}"))
                })?
                .to_string(),
            )
        }
        _ => {
            return Err(ImportError::unsupported(
                file,
                format!(
                    "pre-tokenizer {}",
                    j.get("pre_tokenizer")
                        .map_or(String::new(), Json::to_string)
                ),
            ))
        }
    };
    Ok(Some((TokenizerKind::Gpt2, name)))
}

/// Applies `dir/tokenizer_config.json` when there is one: `bos_token` / `eos_token`
/// (a string or `{"content": ...}`) name BOS/EOS, `add_bos_token` / `add_eos_token` set
/// the flags. Without the file, or a key, the tokenizer stays as it is.
pub fn apply_config(dir: &Path, tok: &mut TokenizerSpec<'static>) -> Result<(), ImportError> {
    let path = dir.join("tokenizer_config.json");
    if !path.exists() {
        return Ok(());
    }
    let name = path.display().to_string();
    let cfg: Json = serde_json::from_slice(&super::read_file(&path)?)
        .map_err(|e| ImportError::malformed(&name, format!("invalid JSON: {e}")))?;
    let find = |key: &str| -> Result<Option<u32>, ImportError> {
        let text = match cfg.get(key) {
            Some(Json::String(s)) => s.as_str(),
            Some(v @ Json::Object(_)) => v.get("content").and_then(Json::as_str).unwrap_or(""),
            _ => return Ok(None),
        };
        let id = tok.tokens.iter().position(|t| t == text).ok_or_else(|| {
            ImportError::malformed(&name, format!("{key} '{text}' is not in the vocabulary"))
        })?;
        Ok(Some(id as u32))
    };
    let (bos, eos) = (find("bos_token")?, find("eos_token")?);
    tok.bos = bos.or(tok.bos);
    tok.eos = eos.or(tok.eos);
    for id in [bos, eos].into_iter().flatten() {
        if let Some(t) = tok.token_types.get_mut(id as usize) {
            *t = llm_format::token_type::CONTROL;
        }
    }
    if let Some(b) = cfg.get("add_bos_token").and_then(Json::as_bool) {
        tok.add_bos = b;
    } else if bos.is_some() && tok.kind == TokenizerKind::Gpt2 {
        // llama.cpp's default for the pre-tokenizer (Llama 3 adds BOS).
        let pre = tok.pre.as_deref();
        tok.add_bos = pre
            .and_then(llmrt::tokenizer::pre_tokenizer)
            .is_some_and(|p| p.add_bos);
    }
    if let Some(e) = cfg.get("add_eos_token").and_then(Json::as_bool) {
        tok.add_eos = e;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(j: Json) -> Result<Option<(TokenizerKind, Option<String>)>, ImportError> {
        kind_and_pre(&j, "tokenizer.json")
    }

    #[test]
    fn kind_and_pre_tokenizer_from_tokenizer_json() {
        let bl = |r: bool| json!({"type": "ByteLevel", "use_regex": r});
        let model = json!({"type": "BPE", "vocab": {}});
        // GPT-2 and SmolLM: byte-level with GPT-2's regex, SmolLM's digits first.
        let gpt2 = kind(json!({"model": model, "pre_tokenizer": bl(true)})).unwrap();
        assert_eq!(gpt2, Some((TokenizerKind::Gpt2, None)));
        let smollm = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, bl(true)]});
        assert_eq!(
            kind(json!({"model": model, "pre_tokenizer": smollm})).unwrap(),
            Some((TokenizerKind::Gpt2, Some("smollm".into())))
        );
        // Llama 3: a Split regex, then byte-level without a regex.
        let split = |re: &str| {
            json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated"}, bl(false)]})
        };
        let llama3 = split(SPLIT_REGEXES[0].0);
        assert_eq!(
            kind(json!({"model": model, "pre_tokenizer": llama3})).unwrap(),
            Some((TokenizerKind::Gpt2, Some("llama-bpe".into())))
        );
        let e = kind(json!({"model": model, "pre_tokenizer": split("\\w+")})).unwrap_err();
        assert!(e.to_string().contains("Split regex"), "{e}");
        // LLaMA 2: byte-fallback BPE; nothing said: the caller's default.
        let bf = json!({"type": "BPE", "byte_fallback": true, "vocab": {}});
        assert_eq!(
            kind(json!({"model": bf})).unwrap(),
            Some((TokenizerKind::SentencePiece, None))
        );
        assert_eq!(kind(json!({"model": model})).unwrap(), None);
        let e = kind(json!({"model": {"type": "Unigram"}})).unwrap_err();
        assert!(e.to_string().contains("Unigram"), "{e}");
    }
}
