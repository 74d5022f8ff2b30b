//! Chat templates (std): the model's Jinja template (`tokenizer.chat_template`, from
//! GGUF or Hugging Face's `tokenizer_config.json`) rendered with `minijinja` the way
//! `transformers`' `apply_chat_template` renders it (`trim_blocks`, `lstrip_blocks`,
//! loop controls, Python's string methods, `raise_exception`, `strftime_now`, a
//! Python-compatible `tojson`, `bos_token` / `eos_token`), or a built-in template
//! ([`builtin`]) for files without one.
//!
//! A chat keeps the KV cache across turns: the whole conversation is rendered and
//! tokenized each turn ([`ChatTemplate::prompt_tokens`]) and only the tokens after the
//! prefix the cache already holds ([`common_prefix`]) are evaluated. Generation stops
//! at the template's end-of-turn tokens ([`ChatTemplate::end_of_turn`]).

pub mod builtin;
mod hf;

use crate::model::Model;
use crate::tokenizer::{EncodeOptions, Tokenizer};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use minijinja::{Environment, Value};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` (or whatever the template knows).
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a template could not be had or rendered. `Display` is one line.
#[derive(Debug)]
pub enum ChatError {
    /// The model file has no `tokenizer.chat_template` and none was named.
    NoTemplate,
    /// The model file's metadata could not be read.
    Model(String),
    /// The template does not parse.
    Syntax(String),
    /// Rendering failed (including the template's own `raise_exception`).
    Render(String),
    /// The rendered text could not be tokenized.
    Tokenize(String),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::NoTemplate => write!(
                f,
                "the model has no chat template (tokenizer.chat_template); name one: {}, or a Jinja file",
                builtin::ALL.map(|(n, _)| n).join(", ")
            ),
            ChatError::Model(m) => write!(f, "reading the model's chat template: {m}"),
            ChatError::Syntax(m) => write!(f, "chat template: {m}"),
            ChatError::Render(m) => write!(f, "rendering the chat template: {m}"),
            ChatError::Tokenize(m) => write!(f, "tokenizing the chat prompt: {m}"),
        }
    }
}

impl std::error::Error for ChatError {}

/// One line from a minijinja error (its `Display` plus the causes, no newlines).
fn one_line(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s.replace('\n', " ")
}

/// Most template instructions one render may run: generous for any real template,
/// a bound for a hostile one.
const FUEL: u64 = 50_000_000;

/// Name of the compiled template inside its environment.
const NAME: &str = "chat_template";

/// A compiled chat template with the special-token texts it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source` (Jinja) to be rendered with these `bos_token` / `eos_token`
    /// texts (undefined in the template when `None`, as in `transformers`).
    pub fn new(
        source: impl Into<String>,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<ChatTemplate, ChatError> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| ChatError::Syntax(one_line(&e)))?,
        );
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", hf::raise_exception);
        env.add_filter("tojson", hf::tojson);
        let mut t = ChatTemplate {
            env,
            source: source.clone(),
            bos_token: bos_token.map(str::to_string),
            eos_token: eos_token.map(str::to_string),
        };
        t = t.with_time(None);
        t.env
            .add_template_owned(NAME, source)
            .map_err(|e| ChatError::Syntax(one_line(&e)))?;
        Ok(t)
    }

    /// Renders `strftime_now` at the fixed Unix time `now` (seconds, UTC) instead of
    /// the clock's, for reproducible prompts (`None`: the clock).
    pub fn with_time(mut self, now: Option<i64>) -> ChatTemplate {
        self.env.add_function("strftime_now", move |fmt: String| {
            let t = now.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            });
            hf::strftime(&fmt, t)
        });
        self
    }

    /// The template for `model`: `choice` names a built-in template (`chatml`,
    /// `llama3`, `gemma`) or is Jinja text; `None` takes the model file's own
    /// (`tokenizer.chat_template`), [`ChatError::NoTemplate`] if it has none.
    /// `bos_token` / `eos_token` are the vocabulary's pieces for BOS / EOS (empty when
    /// it has none).
    pub fn for_model(model: &Model, choice: Option<&str>) -> Result<ChatTemplate, ChatError> {
        let file = model.file().map_err(|e| ChatError::Model(e.to_string()))?;
        let spec = file
            .tokenizer()
            .map_err(|e| ChatError::Model(e.to_string()))?;
        let piece = |id: Option<u32>| {
            id.and_then(|i| spec.tokens.get(i as usize))
                .map(|s| s.to_string())
        };
        let (bos, eos) = (piece(spec.bos), piece(spec.eos));
        let source = match choice {
            Some(c) => builtin::by_name(c).unwrap_or(c).to_string(),
            None => Self::model_template(model)?.ok_or(ChatError::NoTemplate)?,
        };
        // A vocabulary without BOS/EOS gives "" rather than undefined, so that templates
        // which write `bos_token + ...` still render (Jinja refuses undefined + text).
        ChatTemplate::new(
            source,
            Some(bos.as_deref().unwrap_or("")),
            Some(eos.as_deref().unwrap_or("")),
        )
    }

    /// The model file's `tokenizer.chat_template`, if it has one.
    pub fn model_template(model: &Model) -> Result<Option<String>, ChatError> {
        let file = model.file().map_err(|e| ChatError::Model(e.to_string()))?;
        let key = llm_format::options::keys::TOK_CHAT_TEMPLATE;
        match file.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| {
                ChatError::Model(format!("{key} is a {}, not a string", v.type_name()))
            }),
        }
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text of `messages` in the template, ending with the assistant's header
    /// when `add_generation_prompt`. Variables as `transformers` passes them:
    /// `messages`, `add_generation_prompt`, `tools` and `documents` (none),
    /// `bos_token`, `eos_token`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let mut vars: Vec<(&str, Value)> = vec![
            ("messages", Value::from(msgs)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
        ];
        if let Some(b) = &self.bos_token {
            vars.push(("bos_token", Value::from(b.as_str())));
        }
        if let Some(e) = &self.eos_token {
            vars.push(("eos_token", Value::from(e.as_str())));
        }
        let t = self
            .env
            .get_template(NAME)
            .map_err(|e| ChatError::Render(one_line(&e)))?;
        t.render(Value::from_pairs(vars))
            .map_err(|e| ChatError::Render(one_line(&e)))
    }

    /// The token ids of a rendered prompt: special tokens written in the text are
    /// parsed into their ids ([`Tokenizer::encode_with`]); a leading `bos_token` text
    /// becomes the BOS id, and BOS is added when the file asks for it and the
    /// template did not write it (never twice).
    pub fn prompt_tokens(&self, tok: &Tokenizer, rendered: &str) -> Result<Vec<u32>, ChatError> {
        let (mut ids, rest) = match (&self.bos_token, tok.bos()) {
            (Some(text), Some(bos)) if !text.is_empty() && rendered.starts_with(text.as_str()) => {
                (vec![bos], &rendered[text.len()..])
            }
            (_, Some(bos)) if tok.add_bos() => (vec![bos], rendered),
            _ => (Vec::new(), rendered),
        };
        let opts = EncodeOptions {
            add_special: false,
            parse_special: true,
        };
        ids.extend(
            tok.encode_with(rest, opts)
                .map_err(|e| ChatError::Tokenize(e.to_string()))?,
        );
        Ok(ids)
    }

    /// Render and tokenize: [`ChatTemplate::render`] then [`ChatTemplate::prompt_tokens`].
    pub fn tokenize(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, ChatError> {
        let text = self.render(messages, add_generation_prompt)?;
        self.prompt_tokens(tok, &text)
    }

    /// What ends an assistant turn: the ids of the known end-of-turn pieces that the
    /// template writes and the vocabulary has (`<|im_end|>`, `<|eot_id|>`,
    /// `<end_of_turn>`, `<|end|>`, ...), and those pieces as text, for a model that
    /// spells one out. EOS ends generation anyway.
    pub fn end_of_turn(&self, tok: &Tokenizer) -> (Vec<u32>, Vec<String>) {
        let mut ids = Vec::new();
        let mut texts = Vec::new();
        for piece in END_OF_TURN {
            if self.source.contains(piece) || self.eos_token.as_deref() == Some(piece) {
                texts.push(piece.to_string());
                ids.extend(tok.token_id(piece));
            }
        }
        (ids, texts)
    }
}

/// Pieces that end a turn in the common chat formats.
pub const END_OF_TURN: [&str; 9] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|END_OF_TURN_TOKEN|>",
    "</s>",
];

/// How many leading tokens `a` and `b` share: the part of a KV cache holding `a` that
/// a prompt `b` can keep.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Vec<Message> {
        vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Hi \"there\" ü"),
        ]
    }

    #[test]
    fn builtins_render_and_errors_are_one_line() {
        let t = ChatTemplate::new(builtin::CHATML, None, None).unwrap();
        assert_eq!(
            t.render(&chat(), true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi \"there\" ü<|im_end|>\n<|im_start|>assistant\n"
        );
        let g = ChatTemplate::new(builtin::GEMMA, Some("<bos>"), None).unwrap();
        let bad = [Message::new("assistant", "x")];
        let e = g.render(&bad, true).unwrap_err().to_string();
        assert!(
            e.contains("roles must alternate") && !e.contains('\n'),
            "{e}"
        );
        let e = ChatTemplate::new("{% for %}", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("chat template: ") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn python_methods_tojson_and_time() {
        let t = ChatTemplate::new(
            "{{ messages[1].content.strip().upper() }}|{{ messages | tojson }}|{{ {'a': [1, 2.5, none, true]} | tojson(indent=2) }}|{{ strftime_now('%d %b %Y') }}|{{ bos_token is defined }}",
            None,
            None,
        )
        .unwrap()
        .with_time(Some(1_721_952_000));
        assert_eq!(
            t.render(&chat(), false).unwrap(),
            "HI \"THERE\" Ü|[{\"content\": \"Be brief.\", \"role\": \"system\"}, {\"content\": \"Hi \\\"there\\\" ü\", \"role\": \"user\"}]|{\n  \"a\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}|26 Jul 2024|False"
        );
    }

    #[test]
    fn common_prefix_counts_shared_tokens() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2]), 2);
    }
}
