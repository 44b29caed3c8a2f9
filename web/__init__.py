"""tinygpt.web: the HTTP server (OpenAI and Ollama surfaces on one socket) and UI assets."""
