//! JSON Schema → grammar, checked from the outside: random schemas, random small
//! JSON-ish vocabularies (multi-character tokens, a character split across tokens),
//! outputs sampled with random logits through the grammar mask, and every finished
//! output parsed with serde_json and validated against its schema by a small
//! validator written here (it knows nothing of the grammar). Also: unsupported
//! keywords are errors that name them, and the schema's rules as llama.cpp writes them.
#![cfg(feature = "std")]

use llmrt::grammar::json_schema::schema_to_gbnf;
use llmrt::grammar::{Grammar, GrammarMatcher, TokenTrie};
use llmrt::sampler::Rng;
use serde_json::{json, Map, Value};
use std::sync::Arc;

mod common;

fn pick<T: Clone>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.next_u32() as usize % xs.len()].clone()
}

fn scalar(rng: &mut Rng) -> Value {
    pick(
        rng,
        &[
            json!("a"),
            json!("b c"),
            json!(""),
            json!(1),
            json!(-20),
            json!(2.5),
            json!(true),
            json!(null),
            json!("é\""),
        ],
    )
}

/// A random schema of the supported subset; `defs` collects `$defs` entries.
fn random_schema(rng: &mut Rng, depth: u32, defs: &mut Map<String, Value>) -> Value {
    let leaf = depth >= 2;
    let k = rng.next_u32() % if leaf { 7 } else { 12 };
    match k {
        0 => {
            let mut s = json!({"type": "string"});
            if rng.next_u32() % 2 == 0 {
                let min = rng.next_u32() % 3;
                s["minLength"] = json!(min);
                if rng.next_u32() % 2 == 0 {
                    s["maxLength"] = json!(min + rng.next_u32() % 3);
                }
            }
            s
        }
        1 => json!({"type": "integer"}),
        2 => json!({"type": "number"}),
        3 => json!({"type": "boolean"}),
        4 => json!({"type": "null", "description": "ignored"}),
        5 => {
            let n = 1 + rng.next_u32() % 3;
            json!({"enum": (0..n).map(|_| scalar(rng)).collect::<Vec<_>>()})
        }
        6 => json!({"const": scalar(rng)}),
        7 | 8 => {
            let mut props = Map::new();
            let mut required = Vec::new();
            for _ in 0..1 + rng.next_u32() % 3 {
                let name = pick(rng, &["a", "b", "ab", "name", "x y"]).to_string();
                if rng.next_u32() % 2 == 0 {
                    required.push(json!(name.clone()));
                }
                props.insert(name, random_schema(rng, depth + 1, defs));
            }
            let mut names: Vec<String> = required
                .iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect();
            names.sort();
            names.dedup();
            let mut s = json!({"type": "object", "properties": props});
            s["required"] = json!(names);
            match rng.next_u32() % 3 {
                0 => s["additionalProperties"] = json!(false),
                1 => s["additionalProperties"] = json!({"type": "integer"}),
                _ => {}
            }
            s
        }
        9 => {
            let mut s = json!({"type": "array", "items": random_schema(rng, depth + 1, defs)});
            if rng.next_u32() % 2 == 0 {
                let min = rng.next_u32() % 3;
                s["minItems"] = json!(min);
                if rng.next_u32() % 2 == 0 {
                    s["maxItems"] = json!(min + rng.next_u32() % 3);
                }
            }
            s
        }
        10 => {
            json!({"anyOf": [random_schema(rng, depth + 1, defs), random_schema(rng, depth + 1, defs)]})
        }
        _ => {
            let name = format!("d{}", defs.len());
            defs.insert(name.clone(), json!(true));
            let body = random_schema(rng, depth + 1, defs);
            defs.insert(name.clone(), body);
            json!({"$ref": format!("#/$defs/{name}")})
        }
    }
}

/// The validator: whether `v` satisfies `s` (the subset above; `oneOf` read as `anyOf`,
/// which is all a grammar can promise).
fn valid(s: &Value, v: &Value, root: &Value) -> bool {
    let Some(o) = s.as_object() else {
        return s == &json!(true);
    };
    if let Some(r) = o.get("$ref").and_then(|r| r.as_str()) {
        let name = r.trim_start_matches("#/$defs/");
        return valid(&root["$defs"][name], v, root);
    }
    if let Some(c) = o.get("const") {
        return c == v;
    }
    if let Some(e) = o.get("enum").and_then(|e| e.as_array()) {
        return e.contains(v);
    }
    if let Some(a) = o.get("anyOf").or(o.get("oneOf")).and_then(|a| a.as_array()) {
        return a.iter().any(|s| valid(s, v, root));
    }
    match o.get("type").and_then(|t| t.as_str()) {
        Some("string") => {
            let Some(st) = v.as_str() else { return false };
            let n = st.chars().count() as u64;
            n >= o.get("minLength").and_then(|x| x.as_u64()).unwrap_or(0)
                && n <= o
                    .get("maxLength")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(u64::MAX)
        }
        Some("integer") => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("null") => v.is_null(),
        Some("array") => {
            let Some(a) = v.as_array() else { return false };
            let n = a.len() as u64;
            n >= o.get("minItems").and_then(|x| x.as_u64()).unwrap_or(0)
                && n <= o
                    .get("maxItems")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(u64::MAX)
                && a.iter().all(|x| valid(&o["items"], x, root))
        }
        Some("object") => {
            let Some(m) = v.as_object() else { return false };
            let props = o["properties"].as_object().cloned().unwrap_or_default();
            let required = o["required"].as_array().cloned().unwrap_or_default();
            required
                .iter()
                .all(|r| m.contains_key(r.as_str().unwrap_or("")))
                && m.iter().all(|(k, x)| match props.get(k) {
                    Some(ps) => valid(ps, x, root),
                    None => match o.get("additionalProperties") {
                        Some(Value::Bool(false)) => false,
                        Some(extra) => valid(extra, x, root),
                        None => true,
                    },
                })
        }
        _ => true,
    }
}

/// JSON-ish tokens: single characters, common runs, and 'é' split into its two bytes;
/// EOS last (no bytes).
fn vocab() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = "{}[]\":, \n-.0123456789eE+abcnxyméutrfls\\"
        .chars()
        .map(|c| c.to_string().into_bytes())
        .collect();
    for s in [
        "true", "false", "null", "\": ", "\", \"", "{\"", "\"a\"", "ab", "12", ".5", "nam", "e\"",
    ] {
        v.push(s.as_bytes().to_vec());
    }
    v.push(vec![0xC3]);
    v.push(vec![0xA9]);
    v.push(Vec::new());
    v
}

#[test]
fn random_schemas_give_valid_json() {
    let seed = common::test_seed(0x5C4E);
    let mut rng = Rng::new(seed);
    let vocab = vocab();
    let eos = vocab.len() as u32 - 1;
    let bytes: Vec<Option<&[u8]>> = vocab.iter().map(|b| Some(b.as_slice())).collect();
    let trie = Arc::new(TokenTrie::new(&bytes, &[eos]));
    // Closing tokens are likelier, opening ones less, so most outputs end in budget.
    let lean: Vec<f32> = vocab
        .iter()
        .map(|t| match t.first() {
            Some(b'}') | Some(b']') | Some(b'"') => 2.0,
            Some(b'{') | Some(b'[') | Some(b',') | Some(b'\n') | Some(b' ') => -2.0,
            _ => 0.0,
        })
        .collect();
    let (mut finished, mut total) = (0, 0);
    for case in 0..120 {
        let mut defs = Map::new();
        let mut schema = random_schema(&mut rng, 0, &mut defs);
        if !defs.is_empty() {
            if let Some(o) = schema.as_object_mut() {
                o.insert("$defs".into(), Value::Object(defs));
            } else {
                schema = json!({"$defs": defs, "anyOf": [schema]});
            }
        }
        let text = schema.to_string();
        let g = Arc::new(Grammar::from_json_schema(&text).unwrap_or_else(|e| {
            panic!(
                "case {case} (seed {seed}): {e}\n{text}\n{}",
                schema_to_gbnf(&text).unwrap_or_default()
            )
        }));
        for sample in 0..5 {
            total += 1;
            let mut m = GrammarMatcher::new(&g, trie.clone());
            let mut out = Vec::new();
            let mut allowed = Vec::new();
            for _ in 0..300 {
                let mut logits: Vec<f32> = lean.iter().map(|b| b + rng.next_f32() * 6.0).collect();
                m.apply(&mut logits, &mut allowed).unwrap_or_else(|e| {
                    panic!(
                        "case {case}: {e} after {:?}\n{text}",
                        String::from_utf8_lossy(&out)
                    )
                });
                let next = llmrt::sampler::argmax(&logits) as u32;
                m.accept(next, Some(&vocab[next as usize]))
                    .expect("allowed");
                if next == eos {
                    let s = std::str::from_utf8(&out).expect("UTF-8");
                    let v: Value = serde_json::from_str(s).unwrap_or_else(|e| {
                        panic!("case {case} sample {sample} (seed {seed}): {s:?} is not JSON: {e}\n{text}")
                    });
                    assert!(
                        valid(&schema, &v, &schema),
                        "case {case} sample {sample} (seed {seed}): {s} does not satisfy {text}"
                    );
                    finished += 1;
                    break;
                }
                out.extend_from_slice(&vocab[next as usize]);
            }
        }
    }
    assert!(
        finished * 10 >= total * 7,
        "only {finished} of {total} outputs finished"
    );
}

#[test]
fn unsupported_keywords_are_named() {
    for (schema, word) in [
        (r#"{"type": "string", "pattern": "^a+$"}"#, "pattern"),
        (r#"{"allOf": [{"type": "string"}]}"#, "allOf"),
        (r#"{"type": "integer", "minimum": 3}"#, "minimum"),
        (
            r#"{"type": "object", "properties": {"a": {"format": "date"}}}"#,
            "format",
        ),
        (r#"{"$ref": "http://example.com/s.json"}"#, "$ref"),
        (r#"{"type": "strin"}"#, "strin"),
        (r#"{"enum": []}"#, "empty"),
        (
            r#"{"type": "array", "minItems": 3, "maxItems": 1}"#,
            "maxItems",
        ),
        ("{", "not JSON"),
    ] {
        let e = Grammar::from_json_schema(schema)
            .expect_err(schema)
            .to_string();
        assert!(e.contains(word), "{schema}: {e}");
    }
    // Where: the path of the offending schema.
    let e =
        Grammar::from_json_schema(r#"{"type": "object", "properties": {"a": {"format": "date"}}}"#)
            .expect_err("format")
            .to_string();
    assert!(e.contains("#/properties/a"), "{e}");
}

#[test]
fn a_recursive_schema_converts_and_runs() {
    let schema = r##"{"$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
        "required": ["v", "next"], "additionalProperties": false}}, "$ref": "#/$defs/node"}"##;
    let g = Grammar::from_json_schema(schema).expect("recursive schema");
    eprintln!("{}", schema_to_gbnf(schema).unwrap_or_default());
    let trie = Arc::new(TokenTrie::new(&[Some(b"x".as_slice())], &[]));
    let mut m = GrammarMatcher::new(&g, trie);
    assert!(m.accept_str(r#"{"v": 1, "next": {"v": 2, "next": null}}"#));
    assert!(m.can_end());
}
