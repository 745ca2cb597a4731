"""Helpers for the mini-world lm-eval tasks (same logic as the stock hellaswag/winogrande helpers)."""


def process_hellaswag(dataset):
    def _doc(doc):
        return {"query": doc["activity_label"] + ": " + doc["ctx"], "choices": list(doc["endings"]),
                "gold": int(doc["label"])}

    return dataset.map(_doc)


def winogrande_doc_to_text(doc):
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_doc_to_target(doc):
    idx = doc["sentence"].index("_") + 1
    return doc["sentence"][idx:].strip()


def winogrande_doc_to_choice(doc):
    idx = doc["sentence"].index("_")
    return [doc["sentence"][:idx] + opt for opt in (doc["option1"], doc["option2"])]
