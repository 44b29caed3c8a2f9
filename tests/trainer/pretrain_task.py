"""The pretraining tests' corpus pieces: a memorized sentence, a tool and a conversation that calls it."""

REPEATED = "the cat sat on the mat. the dog ate the bone. "  # the pretraining tests' memorized sequence
CLOCK_TOOL = {"type": "function", "function": {"name": "clock", "description": "the time in a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}
CHAT = [{"role": "user", "content": "What time is it in Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "clock", "arguments": {"city": "Rome"}}}]},
        {"role": "tool", "content": "12:00"},
        {"role": "assistant", "content": "It is noon in Rome."}]
