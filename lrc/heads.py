"""A BERT classifier that reads the masked mean of the last layer instead of the [CLS] pooler.

all-MiniLM-L6-v2, the bundled backbone, was trained for mean-pooled sentence embeddings, so its [CLS] vector
carries little until fine-tuning has moved it. `BertForSequenceClassification` can only pool [CLS]; this class
is the same model with the pooling swapped (and without the unused pooler weights). Its config has its own
`model_type`, registered with transformers' Auto classes when `lrc` is imported, so

    import lrc  # registers lrc_bert_mean
    AutoModelForSequenceClassification.from_pretrained("runs/<run>/student")

loads it; without `import lrc` transformers says it does not know `lrc_bert_mean` instead of silently loading a
[CLS] model with a random pooler. `trust_remote_code` is never needed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .losses import represent

POOLINGS = ("cls", "mean")


class BertMeanPoolConfig(BertConfig):
    model_type = "lrc_bert_mean"

    def __init__(self, **kwargs):
        kwargs.pop("model_type", None)  # read from a plain BERT's config.json: this config is a mean-pooling one
        super().__init__(**kwargs)


class BertForSequenceClassificationMeanPool(BertPreTrainedModel):
    """BERT + masked mean of the last hidden layer + dropout + linear: the sentence-transformers way to read a
    sentence, as a sequence classifier (cross-entropy, or MSE for one output)."""

    config_class = BertMeanPoolConfig

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, output_attentions=None, **kwargs
                ) -> SequenceClassifierOutput:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds,
                        output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                        return_dict=True, **kwargs)
        hidden = out.last_hidden_state
        mask = attention_mask if attention_mask is not None else torch.ones(hidden.shape[:2], device=hidden.device)
        pooled = represent(hidden, mask, "mean")
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)


def config_class_for(pooling: str) -> type[BertConfig]:
    return BertMeanPoolConfig if pooling == "mean" else BertConfig


def pooling_of(model: torch.nn.Module) -> str:
    return "mean" if isinstance(model, BertForSequenceClassificationMeanPool) else "cls"


AutoConfig.register(BertMeanPoolConfig.model_type, BertMeanPoolConfig, exist_ok=True)
AutoModelForSequenceClassification.register(BertMeanPoolConfig, BertForSequenceClassificationMeanPool,
                                            exist_ok=True)
