"""UI strings in English and Chinese.

Gradio picks the language from the browser; the footer's Settings panel
switches it by hand. Tabs add their own keys with ``add_strings``.
"""

from __future__ import annotations

EN: dict[str, str] = {
    "title": "# llmspace — the LLM engineering roadmap, runnable",
    "subtitle": "Chat with a real local model, ask the roadmap with citations, evaluate, export to the browser.",
    "tab_chat": "Chat",
    "chatbot": "Conversation",
    "message": "Message",
    "message_ph": "Ask something… (Enter to send)",
    "send": "Send",
    "clear": "Clear",
    "system": "System prompt",
    "system_ph": "Optional: how the assistant should behave",
    "sampling": "Sampling",
    "temperature": "Temperature (0 = greedy)",
    "top_p": "Top-p",
    "top_k": "Top-k (0 = off)",
    "max_tokens": "Max new tokens",
    "seed": "Seed (-1 = random)",
    "stats": "Last answer",
    "model_info": "Model",
}

ZH: dict[str, str] = {
    "title": "# llmspace —— 可运行的大模型工程学习路线",
    "subtitle": "与本地真实模型对话，带引用地问答路线图，做评测，导出到浏览器运行。",
    "tab_chat": "对话",
    "chatbot": "对话记录",
    "message": "消息",
    "message_ph": "输入问题……（回车发送）",
    "send": "发送",
    "clear": "清空",
    "system": "系统提示词",
    "system_ph": "可选：助手应当如何表现",
    "sampling": "采样参数",
    "temperature": "温度（0 = 贪心解码）",
    "top_p": "Top-p",
    "top_k": "Top-k（0 = 关闭）",
    "max_tokens": "最大新 token 数",
    "seed": "随机种子（-1 = 随机）",
    "stats": "上一条回答",
    "model_info": "模型",
}


def add_strings(en: dict[str, str], zh: dict[str, str]) -> None:
    missing = set(en) ^ set(zh)
    if missing:
        raise ValueError(f"UI strings missing a translation: {sorted(missing)}")
    EN.update(en)
    ZH.update(zh)


def make_i18n():
    import gradio as gr

    return gr.I18n(en=EN, zh=ZH, **{"zh-CN": ZH, "zh-TW": ZH})
