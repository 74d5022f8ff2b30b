//! Chat templates rendered by the runtime (`llmrt::chat`, minijinja) against the text
//! `transformers` renders for the same template and conversation: real templates of
//! SmolLM2, Llama 3.1 / 3.2, Qwen 2.5 / 3, Gemma 2, Phi-3.5, Mistral Nemo, DeepSeek-R1
//! and Granite 3.3 (`tests/chat_templates/*.jinja`) and the runtime's built-in ones.
//! The reference strings are recorded in `tests/chat_templates/reference.rs`, written
//! by `scripts/chat-template-refs.py`.

#[path = "chat_templates/reference.rs"]
mod reference;

use llmrt::chat::{ChatTemplate, Message};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn renders_what_transformers_renders() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in reference::CASES {
        let source = std::fs::read_to_string(root().join(case.template))
            .unwrap_or_else(|e| panic!("{}: {e}", case.template));
        let t = ChatTemplate::new(source, case.bos, case.eos)
            .unwrap_or_else(|e| panic!("{}: {e}", case.template))
            .with_time(Some(reference::NOW));
        let messages: Vec<Message> = reference::CONVERSATIONS[case.conversation]
            .iter()
            .map(|(r, c)| Message::new(*r, *c))
            .collect();
        let got = t.render(&messages, case.add_generation_prompt);
        let what = format!(
            "{} conversation {} add_generation_prompt={}",
            case.template, case.conversation, case.add_generation_prompt
        );
        match (case.expected, got) {
            (Some(want), Ok(got)) if got == want => {}
            (None, Err(e)) => assert!(!e.to_string().contains('\n'), "{what}: {e}"),
            (want, got) => failures.push(format!("{what}:\n  want {want:?}\n  got  {got:?}")),
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 60, "only {checked} cases");
}

#[test]
fn builtins_are_the_files_the_reference_rendered() {
    for (name, text) in llmrt::chat::builtin::ALL {
        let file = root().join(format!("runtime/src/chat/templates/{name}.jinja"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "{name}");
        assert!(
            reference::CASES
                .iter()
                .any(|c| c.template.ends_with(&format!("/{name}.jinja"))),
            "{name} has no reference rendering"
        );
    }
}
