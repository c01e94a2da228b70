"""Developer tooling: starting the local servers (`make services`) and keeping `make run`
alive. No runtime module imports it."""
