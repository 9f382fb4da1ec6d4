"""What trae2api serves: the OpenAI-compatible routes and the HTTP plumbing around them."""
