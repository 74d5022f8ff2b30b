//! JSON Schema → GBNF, the common subset llama.cpp's `json-schema-to-grammar` covers,
//! so a schema runs on the same grammar machine as a hand-written grammar.
//!
//! Supported: `type` (object, array, string, number, integer, boolean, null, or a list
//! of them), `properties`, `required`, `additionalProperties` (`false`, `true`, absent
//! or a schema), `items`, `minItems`, `maxItems`, `enum`, `const`, `anyOf`, `oneOf`,
//! `$ref` to `#/$defs/...` or `#/definitions/...` (recursion allowed), `minLength`,
//! `maxLength`; annotations (`title`, `description`, `$schema`, `$id`, `default`,
//! `examples`, `$comment`) are ignored. Any other keyword is an error naming it,
//! rather than a grammar that silently allows more than the schema.
//!
//! As in llama.cpp, object properties come in the order the schema declares them, an
//! extra property (where allowed) comes after them and has a name that is none of the
//! declared ones, and whitespace between tokens is limited (`space`), so a model
//! cannot stall in an endless run of blanks. Unlike llama.cpp, an exponent has at most
//! two digits, so every number the grammar allows fits an f64 (a JSON parser such as
//! serde_json refuses `1e400`).

use super::parse::{Grammar, GrammarError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// Why a schema cannot be converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// Where in the schema (a JSON pointer, `#/properties/a`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON schema at {}: {}", self.path, self.message)
    }
}

impl std::error::Error for SchemaError {}

/// The shared rules (llama.cpp's primitives).
const PRIMITIVES: &[(&str, &str)] = &[
    ("space", r#"| " " | "\n" [ \t]{0,20}"#),
    ("boolean", r#"("true" | "false") space"#),
    ("null", r#""null" space"#),
    (
        "char",
        r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})"#,
    ),
    ("integral-part", r#"[0] | [1-9] [0-9]{0,15}"#),
    ("decimal-part", r#"[0-9]{1,16}"#),
    (
        "number",
        r#"("-"? integral-part) ("." decimal-part)? ([eE] [-+]? [0-9]{1,2})? space"#,
    ),
    ("integer", r#"("-"? integral-part) space"#),
    ("string", r#""\"" char* "\"" space"#),
    (
        "value",
        r#"object | array | string | number | boolean | null"#,
    ),
    (
        "object",
        r#""{" space ( string ":" space value ("," space string ":" space value)* )? "}" space"#,
    ),
    (
        "array",
        r#""[" space ( value ("," space value)* )? "]" space"#,
    ),
];

/// Which primitives each primitive needs.
fn primitive_deps(name: &str) -> &'static [&'static str] {
    match name {
        "boolean" | "null" => &["space"],
        "number" | "integer" => &["space", "integral-part", "decimal-part"],
        "string" => &["space", "char"],
        "value" | "object" | "array" => &[
            "space",
            "boolean",
            "null",
            "char",
            "integral-part",
            "decimal-part",
            "number",
            "string",
            "value",
            "object",
            "array",
        ],
        _ => &[],
    }
}

const IGNORED: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "id",
    "default",
    "examples",
    "$comment",
    "$defs",
    "definitions",
    "readOnly",
    "writeOnly",
    "deprecated",
];

struct Converter<'a> {
    root: &'a Value,
    /// The declared order of each object's keys, by path (`#/properties`, …):
    /// serde_json's map is sorted, and properties come in the order the schema gives.
    order: HashMap<String, Vec<String>>,
    /// Rules in order of creation: (name, body).
    rules: Vec<(String, String)>,
    /// Primitives used.
    used: Vec<&'static str>,
    /// `$ref` target → rule name (set before the target is visited: recursion).
    refs: HashMap<String, String>,
}

/// Converts a JSON Schema (as text) to GBNF text.
pub fn schema_to_gbnf(schema: &str) -> Result<String, SchemaError> {
    let v: Value = serde_json::from_str(schema).map_err(|e| SchemaError {
        path: "#".into(),
        message: format!("not JSON: {e}"),
    })?;
    let mut order = HashMap::new();
    key_order(schema.as_bytes(), &mut 0, "#", &mut order);
    convert(&v, order)
}

/// Converts a parsed JSON Schema to GBNF text (object properties in the map's order).
pub fn value_to_gbnf(schema: &Value) -> Result<String, SchemaError> {
    convert(schema, HashMap::new())
}

/// Records the keys of every object in JSON `s` (already checked by serde_json) in
/// the order written, by JSON-pointer-like path (`#/properties/a`).
fn key_order(s: &[u8], i: &mut usize, path: &str, out: &mut HashMap<String, Vec<String>>) {
    let ws = |s: &[u8], i: &mut usize| {
        while s.get(*i).is_some_and(|b| b.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    // The end of the string starting at `i` (its opening quote).
    let string_end = |s: &[u8], mut i: usize| {
        i += 1;
        while i < s.len() && s[i] != b'"' {
            i += if s[i] == b'\\' { 2 } else { 1 };
        }
        (i + 1).min(s.len())
    };
    ws(s, i);
    match s.get(*i) {
        Some(b'{') => {
            *i += 1;
            let mut keys = Vec::new();
            loop {
                ws(s, i);
                match s.get(*i) {
                    Some(b'"') => {
                        let end = string_end(s, *i);
                        let raw = std::str::from_utf8(&s[*i..end]).unwrap_or("\"\"");
                        let key: String = serde_json::from_str(raw).unwrap_or_default();
                        *i = end;
                        ws(s, i);
                        if s.get(*i) == Some(&b':') {
                            *i += 1;
                        }
                        key_order(s, i, &format!("{path}/{key}"), out);
                        keys.push(key);
                    }
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        break;
                    }
                    _ => break,
                }
            }
            out.insert(path.to_string(), keys);
        }
        Some(b'[') => {
            *i += 1;
            let mut k = 0;
            loop {
                ws(s, i);
                match s.get(*i) {
                    Some(b']') => {
                        *i += 1;
                        break;
                    }
                    Some(b',') => *i += 1,
                    Some(_) => {
                        key_order(s, i, &format!("{path}/{k}"), out);
                        k += 1;
                    }
                    None => break,
                }
            }
        }
        Some(b'"') => *i = string_end(s, *i),
        Some(_) => {
            while s
                .get(*i)
                .is_some_and(|b| !matches!(b, b',' | b']' | b'}') && !b.is_ascii_whitespace())
            {
                *i += 1;
            }
        }
        None => {}
    }
}

fn convert(schema: &Value, order: HashMap<String, Vec<String>>) -> Result<String, SchemaError> {
    let mut c = Converter {
        root: schema,
        order,
        rules: Vec::new(),
        used: Vec::new(),
        refs: HashMap::new(),
    };
    c.rules.push(("root".into(), String::new()));
    let body = c.visit(schema, "root", "#")?;
    c.rules[0].1 = body;
    let mut out = String::new();
    for (name, body) in &c.rules {
        let _ = writeln!(out, "{name} ::= {body}");
    }
    let mut prims: Vec<&str> = Vec::new();
    for u in &c.used {
        for d in primitive_deps(u).iter().chain(core::iter::once(u)) {
            if !prims.contains(d) {
                prims.push(d);
            }
        }
    }
    for (name, body) in PRIMITIVES {
        if prims.contains(name) {
            let _ = writeln!(out, "{name} ::= {body}");
        }
    }
    Ok(out)
}

impl Grammar {
    /// The grammar of the JSON documents a schema (as text) allows.
    pub fn from_json_schema(schema: &str) -> Result<Grammar, SchemaOrGrammarError> {
        let gbnf = schema_to_gbnf(schema).map_err(SchemaOrGrammarError::Schema)?;
        Grammar::parse(&gbnf).map_err(SchemaOrGrammarError::Grammar)
    }
}

/// A schema that cannot be converted, or whose grammar is unsatisfiable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaOrGrammarError {
    /// The schema uses something unsupported or is malformed.
    Schema(SchemaError),
    /// The grammar made from it is refused (e.g. no finite document satisfies it).
    Grammar(GrammarError),
}

impl fmt::Display for SchemaOrGrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaOrGrammarError::Schema(e) => e.fmt(f),
            SchemaOrGrammarError::Grammar(e) => write!(f, "JSON schema: {e}"),
        }
    }
}

impl std::error::Error for SchemaOrGrammarError {}

/// A GBNF literal for `s`.
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if t.is_empty() {
        "x".into()
    } else {
        t
    }
}

fn err(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        path: path.into(),
        message: message.into(),
    }
}

fn count(v: Option<&Value>, path: &str, key: &str) -> Result<Option<u32>, SchemaError> {
    match v {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= super::parse::MAX_REPEAT as u64 => Ok(Some(n as u32)),
            _ => Err(err(
                path,
                format!(
                    "{key} must be an integer from 0 to {}",
                    super::parse::MAX_REPEAT
                ),
            )),
        },
    }
}

/// `item` repeated min..=max times separated by `sep` (GBNF text).
fn repetition(item: &str, sep: &str, min: u32, max: Option<u32>) -> String {
    let rest = |n: Option<u32>| match n {
        None => format!("({sep} {item})*"),
        Some(0) => String::new(),
        Some(1) => format!("({sep} {item})?"),
        Some(n) => format!("({sep} {item}){{0,{n}}}"),
    };
    match (min, max) {
        (_, Some(0)) => String::new(),
        (0, max) => format!("({item} {})?", rest(max.map(|m| m - 1))),
        (min, max) => {
            let more = max.map(|m| m - min);
            if min == 1 {
                format!("{item} {}", rest(more))
            } else {
                format!("{item} ({sep} {item}){{{}}} {}", min - 1, rest(more))
            }
        }
    }
}

impl Converter<'_> {
    fn use_prim(&mut self, p: &'static str) -> &'static str {
        if !self.used.contains(&p) {
            self.used.push(p);
        }
        p
    }

    /// A new rule named after `hint`, unique; returns its name.
    fn add_rule(&mut self, hint: &str, body: String) -> String {
        let base = sanitize(hint);
        let mut name = base.clone();
        let mut k = 1;
        while self.rules.iter().any(|(n, _)| *n == name)
            || PRIMITIVES.iter().any(|(n, _)| *n == name)
        {
            k += 1;
            name = format!("{base}{k}");
        }
        self.rules.push((name.clone(), body));
        name
    }

    /// The GBNF body (an expression) for `schema`; `name` hints rule names.
    fn visit(&mut self, schema: &Value, name: &str, path: &str) -> Result<String, SchemaError> {
        let obj = match schema {
            Value::Bool(true) => return Ok(self.use_prim("value").into()),
            Value::Bool(false) => {
                return Err(err(path, "the schema `false` allows nothing"));
            }
            Value::Object(o) => o,
            _ => return Err(err(path, "a schema must be an object or a boolean")),
        };
        const KNOWN: &[&str] = &[
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "enum",
            "const",
            "anyOf",
            "oneOf",
            "$ref",
            "minLength",
            "maxLength",
        ];
        let unknown: Vec<&str> = obj
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !KNOWN.contains(k) && !IGNORED.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(err(
                path,
                format!("unsupported keyword(s): {}", unknown.join(", ")),
            ));
        }
        if let Some(r) = obj.get("$ref") {
            return self.visit_ref(r, path);
        }
        if let Some(c) = obj.get("const") {
            self.use_prim("space");
            return Ok(format!("{} space", literal(&c.to_string())));
        }
        if let Some(e) = obj.get("enum") {
            let Value::Array(vals) = e else {
                return Err(err(path, "enum must be an array"));
            };
            if vals.is_empty() {
                return Err(err(path, "enum is empty: no value can match"));
            }
            self.use_prim("space");
            let alts: Vec<String> = vals.iter().map(|v| literal(&v.to_string())).collect();
            return Ok(format!("({}) space", alts.join(" | ")));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(a) = obj.get(key) {
                let Value::Array(subs) = a else {
                    return Err(err(path, format!("{key} must be an array")));
                };
                if subs.is_empty() {
                    return Err(err(path, format!("{key} is empty: no value can match")));
                }
                let mut alts = Vec::new();
                for (i, s) in subs.iter().enumerate() {
                    let p = format!("{path}/{key}/{i}");
                    let body = self.visit(s, &format!("{name}-{i}"), &p)?;
                    alts.push(self.add_rule(&format!("{name}-{i}"), body));
                }
                return Ok(alts.join(" | "));
            }
        }
        match obj.get("type") {
            None => {
                if obj.contains_key("properties") || obj.contains_key("additionalProperties") {
                    self.visit_object(obj, name, path)
                } else if obj.contains_key("items") {
                    self.visit_array(obj, name, path)
                } else {
                    Ok(self.use_prim("value").into())
                }
            }
            Some(Value::String(t)) => self.visit_type(t, obj, name, path),
            Some(Value::Array(ts)) => {
                let mut alts = Vec::new();
                for t in ts {
                    let Value::String(t) = t else {
                        return Err(err(path, "type must be a string or a list of strings"));
                    };
                    let body = self.visit_type(t, obj, &format!("{name}-{t}"), path)?;
                    alts.push(self.add_rule(&format!("{name}-{t}"), body));
                }
                if alts.is_empty() {
                    return Err(err(path, "type is an empty list: no value can match"));
                }
                Ok(alts.join(" | "))
            }
            Some(_) => Err(err(path, "type must be a string or a list of strings")),
        }
    }

    fn visit_type(
        &mut self,
        t: &str,
        obj: &Map<String, Value>,
        name: &str,
        path: &str,
    ) -> Result<String, SchemaError> {
        Ok(match t {
            "object" => return self.visit_object(obj, name, path),
            "array" => return self.visit_array(obj, name, path),
            "string" => {
                let min = count(obj.get("minLength"), path, "minLength")?.unwrap_or(0);
                let max = count(obj.get("maxLength"), path, "maxLength")?;
                if max.is_some_and(|m| m < min) {
                    return Err(err(
                        path,
                        "maxLength is below minLength: no string can match",
                    ));
                }
                self.use_prim("space");
                if min == 0 && max.is_none() {
                    return Ok(self.use_prim("string").into());
                }
                self.use_prim("char");
                let reps = match max {
                    None => format!("char{{{min},}}"),
                    Some(m) => format!("char{{{min},{m}}}"),
                };
                format!("\"\\\"\" {reps} \"\\\"\" space")
            }
            "number" => self.use_prim("number").into(),
            "integer" => self.use_prim("integer").into(),
            "boolean" => self.use_prim("boolean").into(),
            "null" => self.use_prim("null").into(),
            other => return Err(err(path, format!("unknown type '{other}'"))),
        })
    }

    fn visit_ref(&mut self, r: &Value, path: &str) -> Result<String, SchemaError> {
        let Value::String(r) = r else {
            return Err(err(path, "$ref must be a string"));
        };
        if let Some(n) = self.refs.get(r) {
            return Ok(n.clone());
        }
        let (section, key) = r
            .strip_prefix("#/$defs/")
            .map(|k| ("$defs", k))
            .or_else(|| r.strip_prefix("#/definitions/").map(|k| ("definitions", k)))
            .ok_or_else(|| {
                err(
                    path,
                    format!(
                        "$ref '{r}' is not supported (only #/$defs/NAME or #/definitions/NAME)"
                    ),
                )
            })?;
        let target = self
            .root
            .get(section)
            .and_then(|d| d.get(key))
            .ok_or_else(|| err(path, format!("$ref '{r}' points to nothing")))?;
        let rule = self.add_rule(key, String::new());
        self.refs.insert(r.clone(), rule.clone());
        let body = self.visit(target, &rule, r)?;
        if let Some(slot) = self.rules.iter_mut().find(|(n, _)| *n == rule) {
            slot.1 = body;
        }
        Ok(rule)
    }

    fn visit_array(
        &mut self,
        obj: &Map<String, Value>,
        name: &str,
        path: &str,
    ) -> Result<String, SchemaError> {
        let item = match obj.get("items") {
            None => self.use_prim("value").to_string(),
            Some(Value::Array(_)) => {
                return Err(err(path, "unsupported keyword(s): items as a list (tuple)"))
            }
            Some(s) => {
                let body = self.visit(s, &format!("{name}-item"), &format!("{path}/items"))?;
                self.add_rule(&format!("{name}-item"), body)
            }
        };
        let min = count(obj.get("minItems"), path, "minItems")?.unwrap_or(0);
        let max = count(obj.get("maxItems"), path, "maxItems")?;
        if max.is_some_and(|m| m < min) {
            return Err(err(path, "maxItems is below minItems: no array can match"));
        }
        self.use_prim("space");
        let body = repetition(&item, "\",\" space", min, max);
        Ok(format!("\"[\" space {body} \"]\" space"))
    }

    fn visit_object(
        &mut self,
        obj: &Map<String, Value>,
        name: &str,
        path: &str,
    ) -> Result<String, SchemaError> {
        self.use_prim("space");
        let empty = Map::new();
        let props = match obj.get("properties") {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => return Err(err(path, "properties must be an object")),
        };
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| err(path, "required must list strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(path, "required must be an array")),
        };
        if let Some(r) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(err(
                path,
                format!("unsupported: required property '{r}' is not in properties"),
            ));
        }
        // Key-value rules, in declared order.
        let mut req = Vec::new();
        let mut opt = Vec::new();
        let declared: Vec<&String> = match self.order.get(&format!("{path}/properties")) {
            Some(keys) => keys.iter().filter(|k| props.contains_key(*k)).collect(),
            None => props.keys().collect(),
        };
        let mut declared: Vec<String> = declared.into_iter().cloned().collect();
        // A key written twice: serde_json keeps one entry, so must we.
        let mut seen = std::collections::HashSet::new();
        declared.retain(|k| seen.insert(k.clone()));
        for k in &declared {
            let Some(s) = props.get(k) else { continue };
            let p = format!("{path}/properties/{k}");
            let hint = format!("{name}-{k}");
            let vb = self.visit(s, &hint, &p)?;
            let v = self.add_rule(&hint, vb);
            let kv = self.add_rule(
                &format!("{hint}-kv"),
                format!(
                    "{} space \":\" space {v}",
                    literal(&Value::String(k.clone()).to_string())
                ),
            );
            if required.contains(&k.as_str()) {
                req.push(kv);
            } else {
                opt.push(kv);
            }
        }
        // The extra property, after the declared ones, named none of them.
        match obj.get("additionalProperties") {
            Some(Value::Bool(false)) => {}
            extra => {
                let v = match extra {
                    None | Some(Value::Bool(true)) => self.use_prim("value").to_string(),
                    Some(s) => {
                        let p = format!("{path}/additionalProperties");
                        let b = self.visit(s, &format!("{name}-extra"), &p)?;
                        self.add_rule(&format!("{name}-extra"), b)
                    }
                };
                let keys: Vec<&str> = props.keys().map(|k| k.as_str()).collect();
                let key = self.not_strings(&keys, name);
                let kv = self.add_rule(
                    &format!("{name}-extra-kv"),
                    format!("{key} \":\" space {v}"),
                );
                // The last optional entry: one extra property, then any more.
                let extras =
                    self.add_rule(&format!("{name}-extras"), format!("(\",\" space {kv})*"));
                opt.push(format!("{kv} {extras}"));
            }
        }
        let sep = "\",\" space";
        let body = if !req.is_empty() {
            let mut b = req.join(&format!(" {sep} "));
            for o in &opt {
                let _ = write!(b, " ({sep} {o})?");
            }
            b
        } else if opt.is_empty() {
            String::new()
        } else {
            // No required property: the first one present starts the list.
            let mut alts = Vec::new();
            for i in 0..opt.len() {
                let mut a = opt[i].clone();
                for o in &opt[i + 1..] {
                    let _ = write!(a, " ({sep} {o})?");
                }
                alts.push(a);
            }
            format!("({})?", alts.join(" | "))
        };
        Ok(format!("\"{{\" space {body} \"}}\" space"))
    }

    /// A rule for a JSON string (quotes and trailing space included) that is none of
    /// `keys`, without escapes (so what is written is what is decoded).
    fn not_strings(&mut self, keys: &[&str], name: &str) -> String {
        self.use_prim("space");
        // A character trie of the keys; a rule per node: the text after this node's
        // prefix that makes the whole string differ from every key.
        #[derive(Default)]
        struct Node {
            children: Vec<(char, usize)>,
            end: bool,
        }
        let mut nodes = vec![Node::default()];
        for k in keys {
            let mut n = 0;
            for c in k.chars() {
                n = match nodes[n].children.iter().find(|(x, _)| *x == c) {
                    Some(&(_, m)) => m,
                    None => {
                        nodes.push(Node::default());
                        let m = nodes.len() - 1;
                        nodes[n].children.push((c, m));
                        m
                    }
                };
            }
            nodes[n].end = true;
        }
        let plain = r#"[^"\\\x7F\x00-\x1F]"#;
        let class_char = |c: char| -> String {
            match c {
                '\\' | ']' | '[' | '-' | '^' | '"' => format!("\\{c}"),
                c if (c as u32) < 0x20 || c as u32 == 0x7F => format!("\\x{:02X}", c as u32),
                c => c.to_string(),
            }
        };
        let base = format!("{name}-key");
        let rest = self.add_rule(&format!("{base}-rest"), format!("{plain}*"));
        // Rules for nodes, deepest first so names exist; each node's rule produces
        // the rest of the string and the closing quote.
        let mut rule_of = vec![String::new(); nodes.len()];
        for n in (0..nodes.len()).rev() {
            let node = &nodes[n];
            let mut alts = Vec::new();
            for (c, m) in &node.children {
                alts.push(format!("{} {}", literal(&c.to_string()), rule_of[*m]));
            }
            let excluded: String = node.children.iter().map(|(c, _)| class_char(*c)).collect();
            alts.push(format!(
                "[^\"\\\\\\x7F\\x00-\\x1F{excluded}] {rest} \"\\\"\""
            ));
            if !node.end {
                alts.push("\"\\\"\"".into());
            }
            rule_of[n] = self.add_rule(&format!("{base}-{n}"), alts.join(" | "));
        }
        format!("\"\\\"\" {} space", rule_of[0])
    }
}
