"""Fast paths of the Trainer, each exact against the reference path (docs/fast-paths.md): which to use
(choice), the fused step and its distinct-row capacities, split first layer, lazy Adam, fast eval, loss scaling."""
