"""Chat tab: streaming chat with a system prompt, sampling controls, and the
token counts and latency of each answer."""

from __future__ import annotations

import gradio as gr

from llmspace.chat import start_chat
from llmspace.engine.base import GenerationParams
from llmspace.errors import LLMSpaceError
from llmspace.ui.common import user_key
from llmspace.ui.eval_tab import wire_feedback


def _stats(d) -> str:
    t, u = d.timings or {}, d.usage
    return (f"**{u.prompt_tokens}** prompt + **{u.completion_tokens}** completion tokens · "
            f"TTFT **{t.get('ttft_s', 0):.2f} s** · total **{t.get('total_s', 0):.2f} s** · "
            f"**{t.get('tokens_per_s', 0):.1f} tok/s** · finish: `{d.finish_reason}`"
            + (f" · waited **{t['queue_s']:.2f} s** for a batch slot" if t.get("queue_s", 0) >= 0.05 else ""))


def respond(services, message: str, history: list, system: str, temperature: float, top_p: float,
            top_k: int, max_tokens: int, seed: int, user_key: str | None = None):
    """Stream (history, stats) as the answer grows. The library assigns the A/B
    arm (by ``user_key``) and records the answer, like every shell's."""
    if not message or not message.strip():
        raise gr.Error("Type a message first. / 请先输入消息。")
    msgs = ([{"role": "system", "content": system}] if system and system.strip() else [])
    msgs += [{"role": m["role"], "content": m["content"]} for m in (history or [])]
    msgs.append({"role": "user", "content": message})
    params = GenerationParams(max_new_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                              top_k=int(top_k), seed=None if seed is None or int(seed) < 0 else int(seed))
    try:
        turn = start_chat(services, msgs, params, user_key=user_key)
    except LLMSpaceError as exc:
        raise gr.Error(exc.message) from None
    history = list(history or []) + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
    text = ""
    for d in turn.stream():
        text += d.text
        history[-1] = {"role": "assistant", "content": text}
        yield history, (_stats(d) if d.finish_reason else "…")


def build(services, t) -> None:
    s = services.settings
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Chat · 对话", height=460)  # Chatbot labels are not translated by gradio
            msg = gr.Textbox(label=t("message"), placeholder=t("message_ph"), lines=2, autofocus=True)
            with gr.Row():
                send = gr.Button(t("send"), variant="primary")
                clear = gr.Button(t("clear"))
            stats = gr.Markdown(label=t("stats"))
        with gr.Column(scale=1):
            system = gr.Textbox(label=t("system"), placeholder=t("system_ph"), lines=3)
            with gr.Accordion(t("sampling"), open=True):
                temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label=t("temperature"))
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label=t("top_p"))
                top_k = gr.Slider(0, 200, value=0, step=1, label=t("top_k"))
                max_tokens = gr.Slider(1, s.max_tokens_limit, value=s.default_max_tokens, step=1,
                                       label=t("max_tokens"))
                seed = gr.Number(value=-1, precision=0, label=t("seed"))
            model = getattr(services.engine, "label", None) if s.backend == "remote" else s.chat_model  # no network
            weights = "" if s.backend == "remote" else f" · weights `{services.engine.weight_format}` · batches up to " \
                f"{s.max_num_seqs} requests"
            gr.Markdown(f"**{model}** · backend `{s.backend}`{weights}", label=t("model_info"))

    inputs = [msg, chatbot, system, temperature, top_p, top_k, max_tokens, seed]

    def _respond(message, history, system, temperature, top_p, top_k, max_tokens, seed, request: gr.Request):
        yield from respond(services, message, history, system, temperature, top_p, top_k, max_tokens, seed,
                           user_key=user_key(request))

    send.click(_respond, inputs, [chatbot, stats], api_name="chat", concurrency_id="model").then(
        lambda: "", None, msg, api_visibility="private")
    msg.submit(_respond, inputs, [chatbot, stats], api_visibility="private", concurrency_id="model").then(
        lambda: "", None, msg, api_visibility="private")
    clear.click(lambda: ([], ""), None, [chatbot, stats], api_visibility="private")
    wire_feedback(chatbot, services, kind="chat")  # 👍/👎 on answers, stored for `llmspace feedback export`
