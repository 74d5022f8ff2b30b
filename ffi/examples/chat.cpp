// chat.cpp: a C++ RAII wrapper over libllmrt and a chat loop reading stdin.
//
//   chat MODEL [SEED] [N_PREDICT]
//
// Each line read from stdin becomes "User: LINE\nBot:" appended to the transcript;
// the reply (up to N_PREDICT tokens, ending before a newline) is printed on one line
// of stdout and appended too. The KV cache is trimmed to the prefix it shares with the
// new transcript, so only the new text is evaluated each turn.
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

    std::vector<uint32_t> tokenize(std::string_view text, int32_t add_bos = LLMRT_BOS_DEFAULT) const {
        size_t n = 0;
        llmrt_status st = llmrt_tokenize(m_, text.data(), text.size(), add_bos, nullptr, 0, &n);
        if (st != LLMRT_ERR_BUFFER_TOO_SMALL) check(st, "tokenize");
        std::vector<uint32_t> ids(n);
        check(llmrt_tokenize(m_, text.data(), text.size(), add_bos, ids.data(), ids.size(), &n),
              "tokenize");
        return ids;
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
    if (argc < 2 || argc > 4) {
        std::cerr << "usage: chat MODEL [SEED] [N_PREDICT]\n";
        return 2;
    }
    try {
        llmrt::Model model(argv[1]);
        llmrt_context_params cp = llmrt_context_default_params();
        cp.n_threads = 1;
        cp.sampler.seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 42;
        llmrt::Context ctx(model, cp);
        llmrt_generate_params gp = llmrt_generate_default_params();
        gp.n_predict = argc > 3 ? static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)) : 64;
        const char *stops[] = {"\n"};
        gp.stop = stops;
        gp.n_stop = 1;

        std::string transcript, line;
        std::cerr << "> " << std::flush;
        while (std::getline(std::cin, line)) {
            transcript += "User: " + line + "\nBot:";
            std::vector<uint32_t> ids = model.tokenize(transcript);
            if (ids.size() + gp.n_predict >= ctx.n_ctx()) {
                std::cerr << "(context full: starting a new conversation)\n";
                transcript = "User: " + line + "\nBot:";
                ids = model.tokenize(transcript);
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
            transcript += reply + "\n";
            std::cerr << "> " << std::flush;
        }
        std::cerr << "\n";
    } catch (const std::exception &e) {
        std::cerr << "chat: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
