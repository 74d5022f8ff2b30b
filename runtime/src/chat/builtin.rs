//! Built-in chat templates for models whose file carries none (`--chat-template
//! chatml|llama3|gemma`). Each is the template the model family publishes, trimmed to
//! plain text messages (`templates/*.jinja`); `tests/chat_template.rs` renders them
//! against `transformers`.

/// ChatML (`<|im_start|>role\n…<|im_end|>\n`): Qwen, SmolLM, Hermes and many others.
pub const CHATML: &str = include_str!("templates/chatml.jinja");

/// Llama 3 (Meta-Llama-3-8B-Instruct's template): BOS, then
/// `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>` per message.
pub const LLAMA3: &str = include_str!("templates/llama3.jinja");

/// Gemma 2/3 (`<start_of_turn>user\n…<end_of_turn>\n`, the assistant is `model`); a
/// system message goes before the first user message, as Gemma 3's template does.
pub const GEMMA: &str = include_str!("templates/gemma.jinja");

/// The built-in templates by name.
pub const ALL: [(&str, &str); 3] = [("chatml", CHATML), ("llama3", LLAMA3), ("gemma", GEMMA)];

/// The built-in template called `name`, if any.
pub fn by_name(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
