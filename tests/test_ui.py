"""The Gradio UI, driven by gradio_client against the launched app."""

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gclient(live_server):
    from gradio_client import Client

    return Client(f"{live_server}/", verbose=False)


def test_chat_event_answers_with_stats(gclient):
    history, stats = gclient.predict("What is the capital of France?", [], "", 0.0, 1.0, 0, 30, -1,
                                     api_name="/chat")
    assert history[-1]["role"] == "assistant"
    text = history[-1]["content"]
    text = text if isinstance(text, str) else "".join(b["text"] for b in text)
    assert text == "The capital of France is Paris."
    assert "37" in stats and "7" in stats and "tok/s" in stats


def test_chat_event_keeps_history(gclient):
    history, _ = gclient.predict("What is the capital of France?", [], "", 0.0, 1.0, 0, 30, -1, api_name="/chat")
    history2, _ = gclient.predict("And of Germany?", history, "Answer briefly.", 0.0, 1.0, 0, 20, -1,
                                  api_name="/chat")
    assert len(history2) == 4


def test_empty_message_is_a_clear_error(gclient):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Type a message"):
        gclient.predict("   ", [], "", 0.0, 1.0, 0, 30, -1, api_name="/chat")


def test_public_events_have_stable_api_names(gclient):
    names = gclient.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/chat" in names
    assert not any(n.startswith("/lambda") or n == "/False" for n in names)
