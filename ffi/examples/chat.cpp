// chat.cpp: a C++ RAII wrapper over libllmrt and a chat loop reading stdin.
//
//   chat MODEL [SEED] [N_PREDICT] [TEMPLATE]
//
// Each line read from stdin is a user message. The conversation is rendered in the
// model's own chat template (or TEMPLATE: chatml, llama3, gemma, or Jinja text) by
// llmrt_chat_apply_template and tokenized; the KV cache is trimmed to the prefix it
// shares with the new tokens, so only the new turn is evaluated. The answer (up to
// N_PREDICT tokens, ending at EOS or the template's end-of-turn marker) streams to
// stdout, followed by a newline, and joins the conversation.
//
// Build: c++ -std=c++17 -Wall -Wextra -Werror chat.cpp -I../include -L../../target/release -lllmrt
#include "llmrt.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmrt {

// A failed call: the status and the library's message.
class Error : public std::runtime_error {
  public:
    Error(llmrt_status status, const std::string &what)
        : std::runtime_error(what + ": " + llmrt_last_error() + " (" +
                             llmrt_status_name(status) + ")"),
          status_(status) {}
    llmrt_status status() const { return status_; }

  private:
    llmrt_status status_;
};

inline void check(llmrt_status st, const char *what) {
    if (st != LLMRT_OK) throw Error(st, what);
}

// A loaded model; movable, freed once.
class Model {
  public:
    explicit Model(const std::string &path) { check(llmrt_model_load(path.c_str(), &m_), "load"); }
    Model(Model &&o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    Model &operator=(Model &&o) noexcept {
        std::swap(m_, o.m_);
        return *this;
    }
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;
    ~Model() { llmrt_model_free(m_); }

    llmrt_model_info info() const {
        llmrt_model_info i;
        check(llmrt_model_get_info(m_, &i), "model info");
        return i;
    }

    // Token ids of `text`; with `parse_special`, special tokens written in it
    // (`<|im_start|>`) become their ids, as a rendered chat template needs.
    std::vector<uint32_t> tokenize(std::string_view text, int32_t add_bos = LLMRT_BOS_DEFAULT,
                                   bool parse_special = false) const {
        size_t n = 0;
        llmrt_status st = llmrt_tokenize_special(m_, text.data(), text.size(), add_bos,
                                                 parse_special, nullptr, 0, &n);
        if (st != LLMRT_ERR_BUFFER_TOO_SMALL) check(st, "tokenize");
        std::vector<uint32_t> ids(n);
        check(llmrt_tokenize_special(m_, text.data(), text.size(), add_bos, parse_special,
                                     ids.data(), ids.size(), &n),
              "tokenize");
        return ids;
    }

    // A rendered chat prompt as ids: specials parsed, BOS as the file asks but never
    // twice (a template may write it itself).
    std::vector<uint32_t> tokenize_prompt(std::string_view text) const {
        std::vector<uint32_t> ids = tokenize(text, LLMRT_BOS_DEFAULT, true);
        const int32_t bos = info().bos;
        if (bos >= 0 && ids.size() >= 2 && ids[0] == static_cast<uint32_t>(bos) &&
            ids[1] == static_cast<uint32_t>(bos))
            ids.erase(ids.begin());
        return ids;
    }

    // The conversation in a chat template (NULL: the model's own), as text.
    std::string apply_template(const std::vector<std::pair<std::string, std::string>> &conv,
                               bool add_generation_prompt, const char *tmpl = nullptr) const {
        std::vector<llmrt_chat_message> msgs;
        for (const auto &m : conv) msgs.push_back({m.first.c_str(), m.second.c_str()});
        size_t n = 0;
        llmrt_status st = llmrt_chat_apply_template(m_, tmpl, msgs.data(), msgs.size(),
                                                    add_generation_prompt, nullptr, 0, &n);
        if (st != LLMRT_ERR_BUFFER_TOO_SMALL) check(st, "chat template");
        std::string text(n + 1, '\0');
        check(llmrt_chat_apply_template(m_, tmpl, msgs.data(), msgs.size(), add_generation_prompt,
                                        text.data(), text.size(), &n),
              "chat template");
        text.resize(n);
        return text;
    }

    const llmrt_model *get() const { return m_; }

  private:
    llmrt_model *m_ = nullptr;
};

// One stream over a model. Text pieces go to a std::function; an exception it throws
// is carried across the C call (never through it) and rethrown here.
class Context {
  public:
    using OnText = std::function<bool(std::string_view)>;  // false stops

    Context(const Model &m, const llmrt_context_params &p) {
        check(llmrt_context_new(m.get(), &p, &c_), "context");
    }
    Context(Context &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Context(const Context &) = delete;
    Context &operator=(const Context &) = delete;
    ~Context() { llmrt_context_free(c_); }

    std::vector<uint32_t> tokens() const {
        size_t n = 0;
        llmrt_status st = llmrt_context_tokens(c_, nullptr, 0, &n);
        if (st != LLMRT_ERR_BUFFER_TOO_SMALL) check(st, "context tokens");
        std::vector<uint32_t> ids(n);
        if (n > 0) check(llmrt_context_tokens(c_, ids.data(), n, &n), "context tokens");
        return ids;
    }
    size_t n_ctx() const {
        size_t n = 0;
        check(llmrt_context_n_ctx(c_, &n), "n_ctx");
        return n;
    }
    void truncate(size_t n) { check(llmrt_kv_truncate(c_, n), "truncate"); }
    void reset() { check(llmrt_kv_reset(c_), "reset"); }
    void cancel() { check(llmrt_cancel(c_), "cancel"); }

    llmrt_generation generate(const std::vector<uint32_t> &prompt, const llmrt_generate_params &p,
                              const OnText &on_text) {
        Call call{&on_text, nullptr};
        llmrt_generation g{};
        llmrt_status st = llmrt_generate_tokens(c_, prompt.data(), prompt.size(), &p, trampoline,
                                                &call, &g);
        if (call.error) std::rethrow_exception(call.error);
        check(st, "generate");
        return g;
    }

  private:
    struct Call {
        const OnText *f;
        std::exception_ptr error;
    };
    static int32_t trampoline(const char *piece, size_t len, void *user) noexcept {
        Call *call = static_cast<Call *>(user);
        try {
            return (*call->f)(std::string_view(piece, len)) ? 0 : 1;
        } catch (...) {
            call->error = std::current_exception();
            return 1;
        }
    }
    llmrt_context *c_ = nullptr;
};

}  // namespace llmrt

int main(int argc, char **argv) {
    if (argc < 2 || argc > 5) {
        std::cerr << "usage: chat MODEL [SEED] [N_PREDICT] [TEMPLATE]\n";
        return 2;
    }
    try {
        llmrt::Model model(argv[1]);
        const char *tmpl = argc > 4 ? argv[4] : nullptr;  // NULL: the model's own
        llmrt_context_params cp = llmrt_context_default_params();
        cp.n_threads = 1;
        cp.sampler.seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 42;
        llmrt::Context ctx(model, cp);
        llmrt_generate_params gp = llmrt_generate_default_params();
        gp.n_predict = argc > 3 ? static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)) : 256;
        // End-of-turn markers of the common templates (EOS ends generation anyway).
        const char *stops[] = {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"};
        gp.stop = stops;
        gp.n_stop = 4;

        std::vector<std::pair<std::string, std::string>> conv;
        std::string line;
        std::cerr << "> " << std::flush;
        while (std::getline(std::cin, line)) {
            conv.emplace_back("user", line);
            std::vector<uint32_t> ids = model.tokenize_prompt(model.apply_template(conv, true, tmpl));
            if (ids.size() + gp.n_predict >= ctx.n_ctx()) {
                std::cerr << "(context full: starting a new conversation)\n";
                conv.erase(conv.begin(), conv.end() - 1);
                ids = model.tokenize_prompt(model.apply_template(conv, true, tmpl));
                ctx.reset();
            }
            // Reuse the cached prefix; evaluate at least one token.
            std::vector<uint32_t> cached = ctx.tokens();
            size_t keep = 0;
            while (keep < cached.size() && keep < ids.size() && cached[keep] == ids[keep]) keep++;
            if (keep == ids.size()) keep--;
            ctx.truncate(keep);
            std::vector<uint32_t> rest(ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end());
            std::string reply;
            ctx.generate(rest, gp, [&](std::string_view piece) {
                reply += piece;
                std::cout << piece << std::flush;
                return true;
            });
            std::cout << "\n" << std::flush;
            conv.emplace_back("assistant", reply);
            std::cerr << "> " << std::flush;
        }
        std::cerr << "\n";
    } catch (const std::exception &e) {
        std::cerr << "chat: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
