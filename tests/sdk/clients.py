"""The official `openai` and `anthropic` Python SDKs as clients of a running gateway.

Usage: clients.py <gateway base URL> <claude model> <local model>

The gateway serves <claude model> from an Anthropic upstream and <local model> from an
OpenAI-only backend, so each SDK talks to an upstream of the other dialect. Exits 0
when every check passes; prints what failed otherwise.
"""
import json
import sys

import anthropic
import openai

base, claude, local = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


tools_oai = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
]
tools_anth = [
    {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
    {"name": "now", "input_schema": {"type": "object", "properties": {}}},
]

# --- openai SDK -> Anthropic upstream ---------------------------------------------------
oc = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
r = oc.chat.completions.create(model=claude, messages=[{"role": "user", "content": "hi"}], max_tokens=32)
check(r.choices[0].finish_reason == "stop", f"openai chat finish_reason {r.choices[0].finish_reason}")
check(bool(r.choices[0].message.content), "openai chat has no content")
check(r.usage.completion_tokens > 0, "openai chat has no usage")

text = ""
usage = None
for chunk in oc.chat.completions.create(model=claude, messages=[{"role": "user", "content": "hi"}],
                                        stream=True, stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
check(len(text) > 5, "openai stream got no text")
check(usage is not None and usage.completion_tokens > 0, "openai stream got no usage chunk")

r = oc.chat.completions.create(model=claude, messages=[{"role": "user", "content": "weather?"}], tools=tools_oai,
                               extra_headers={"x-mock-tool-calls": "2"})
calls = r.choices[0].message.tool_calls or []
check([c.function.name for c in calls] == ["get_weather", "now"], f"openai tool calls {calls}")
for c in calls:
    json.loads(c.function.arguments)
check(r.choices[0].finish_reason == "tool_calls", "openai tools finish_reason")

names, args = {}, {}
for chunk in oc.chat.completions.create(model=claude, messages=[{"role": "user", "content": "weather?"}],
                                        tools=tools_oai, stream=True, extra_headers={"x-mock-tool-calls": "2"}):
    for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        if tc.function and tc.function.name:
            names[tc.index] = tc.function.name
        args[tc.index] = args.get(tc.index, "") + ((tc.function.arguments or "") if tc.function else "")
check(names == {0: "get_weather", 1: "now"}, f"openai streamed tool names {names}")
for a in args.values():
    json.loads(a)

# A stream the upstream breaks: the SDK raises (the in-band error chunk is an APIError).
raised = False
try:
    for _ in oc.chat.completions.create(model=claude, messages=[{"role": "user", "content": "hi"}], stream=True,
                                        extra_headers={"x-mock-error-after": "2"}):
        pass
except openai.APIError:
    raised = True
check(raised, "the openai SDK did not raise on a stream that ended in error")

try:
    oc.chat.completions.create(model=claude, messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"x-mock-status": "529"})
    check(False, "a 529 from Anthropic did not raise")
except openai.APIStatusError as e:
    check(e.status_code == 503, f"overloaded should be 503, got {e.status_code}")

# --- anthropic SDK -> OpenAI-only backend --------------------------------------------------
ac = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0)
m = ac.messages.create(model=local, max_tokens=64, messages=[{"role": "user", "content": "hello"}])
check(m.stop_reason == "end_turn", f"anthropic stop_reason {m.stop_reason}")
check(m.content and m.content[0].type == "text" and m.content[0].text, "anthropic message has no text")
check(m.usage.output_tokens > 0, "anthropic message has no usage")

with ac.messages.stream(model=local, max_tokens=64, messages=[{"role": "user", "content": "hello"}]) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
check(len(streamed) > 5, "anthropic stream got no text")
check(final.stop_reason == "end_turn", f"anthropic streamed stop_reason {final.stop_reason}")

m = ac.messages.create(model=local, max_tokens=64, tools=tools_anth, messages=[{"role": "user", "content": "weather?"}],
                       extra_headers={"x-mock-tool-calls": "2"})
uses = [b for b in m.content if b.type == "tool_use"]
check([u.name for u in uses] == ["get_weather", "now"], f"anthropic tool uses {uses}")
check(m.stop_reason == "tool_use", "anthropic tools stop_reason")

with ac.messages.stream(model=local, max_tokens=64, tools=tools_anth, messages=[{"role": "user", "content": "w?"}],
                        extra_headers={"x-mock-tool-calls": "2", "x-mock-interleave": "1"}) as s:
    final = s.get_final_message()
uses = [b for b in final.content if b.type == "tool_use"]
check([u.name for u in uses] == ["get_weather", "now"], f"anthropic streamed tool uses {uses}")
check(all(isinstance(u.input, dict) for u in uses), "anthropic streamed tool inputs are not objects")

n = ac.messages.count_tokens(model=local, messages=[{"role": "user", "content": "hello there"}])
check(n.input_tokens > 0, "count_tokens gave nothing")

try:
    ac.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    check(False, "an unknown model did not raise")
except anthropic.NotFoundError:
    pass

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok")
