"""Step 3: where the weights came from, as their model card records it."""
from __future__ import annotations

from wlm.lessons import TUTORIAL

TITLE = "Load the pretrained weights"
READS = ("loaded",)
GIVES = ("facts",)
SHOWS = "facts"
EXPLAIN = ("The weights come from a bundle whose card records how they were trained and how well they scored on "
           "the test split (lower loss: the true next word got more probability).")


def lesson(loaded):
    card = loaded.card  # card.json; a bare .pth has none
    recipe = card.get("recipe", {})
    keys = ("optimizer", "lr", "epochs",
            "batch_size", "bptt", "dropout")
    facts = {
        "weights": loaded.source,
        "recipe": ", ".join(f"{k} {recipe[k]}" for k in keys
                            if k in recipe) or "not recorded",
        "test loss (float)":
            card.get("test_loss_fp32", "not recorded"),
    }
    for what, value in facts.items():
        print(f"{what}: {value}")
    return {"facts": facts}


def notice(values: dict) -> str:
    loss = values["facts"]["test loss (float)"]
    if not isinstance(loss, (int, float)):
        what = "Their card records no test loss" if values["loaded"].card else "These weights carry no card"
        return f"{what}, so nothing here says how well they score: lesson 7 measures their loss."
    tutorial = TUTORIAL["loss"][0]
    better = "lower than" if loss < tutorial else "higher than" if loss > tutorial else "the same as"
    return (f"Test loss {loss:.3f} on the whole test split is {better} the tutorial weights' {tutorial:.3f}: "
            "lower means the true next word got more probability.")
