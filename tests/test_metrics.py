import numpy as np
import torch

from automl.trial.metrics import ConfusionMatrix, mean_iou, per_class_iou


def test_miou_matches_hand_computed_confusion_matrix():
    # 3 classes, ignore index 9. Truth/prediction chosen so every cell is easy to count.
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 9, 9]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 2]])
    cm = ConfusionMatrix(3, ignore_index=9)
    cm.update(pred, target)
    expected = np.array([[1, 1, 0],   # truth 0: one right, one predicted as 1
                         [0, 2, 0],   # truth 1: both right
                         [1, 0, 1]])  # truth 2: one right, one predicted as 0; void pixels ignored
    np.testing.assert_array_equal(cm.numpy(), expected)
    # IoU_c = tp / (row + col - tp): class0 1/(2+2-1)=1/3, class1 2/(2+3-2)=2/3, class2 1/(2+1-1)=1/2
    np.testing.assert_allclose(per_class_iou(cm.numpy()), [1 / 3, 2 / 3, 1 / 2])
    assert abs(mean_iou(cm.numpy()) - (1 / 3 + 2 / 3 + 1 / 2) / 3) < 1e-12


def test_absent_class_is_excluded_not_zero():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1]))
    iou = per_class_iou(cm.numpy())
    assert np.isnan(iou[2]) and mean_iou(cm.numpy()) == 1.0


def test_accumulates_over_batches():
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    cm.update(torch.tensor([1]), torch.tensor([1]))
    np.testing.assert_array_equal(cm.numpy(), [[1, 1], [0, 1]])
