"""Fast paths of the Trainer, each exact against the reference path (docs/fast-paths.md): which to use, split first layer, lazy Adam, fast eval, loss scaling."""
