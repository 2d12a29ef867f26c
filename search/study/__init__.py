"""The study room: a study in its storage (journal or database): creating and loading it, samplers and
pruners, warm start, the epoch budget, recovering trials of dead workers, and the devices a study needs."""
