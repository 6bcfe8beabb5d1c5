#pragma once
/// Saliency maps (CAM, Grad-CAM) drawn over images: a blend through a colormap, the
/// hot pixels only, or the map's contour; with an optional colour bar and a label.
/// Also pytorch-grad-cam's show_cam_on_image reproduced bit for bit, grids of
/// captioned tiles and burned-in labels.

#include <torch/arg.h>

#include <opencv2/core/mat.hpp>

#include <string>
#include <vector>

namespace attend::vision {

/// ensures: the names of every OpenCV 4.6 colormap, lower case, in the order of their
///          cv::COLORMAP_* values (so colormap_names()[cv::COLORMAP_JET] == "jet"):
///          autumn bone jet winter rainbow ocean summer spring cool hsv pink hot parula
///          magma inferno plasma viridis cividis twilight twilight_shifted turbo deepgreen.
std::vector<std::string> colormap_names();

/// ensures: the cv::COLORMAP_* value of `name` (case-insensitive, one of colormap_names()).
/// throws c10::Error listing the valid names for any other name.
int colormap_by_name(const std::string& name);

/// ensures: the name of colormap `colormap` (the inverse of colormap_by_name).
/// throws c10::Error unless 0 <= colormap < colormap_names().size().
std::string colormap_name(int colormap);

/// The order of the three channels of an 8-bit colour image.
enum class ColourOrder { kRgb, kBgr };

/// ensures: kRgb for "rgb", kBgr for "bgr" (case-insensitive).
/// throws c10::Error naming the valid values for anything else.
ColourOrder parse_colour_order(const std::string& name);

/// How render_saliency shows the map.
enum class SaliencyMode {
  /// Every pixel is the blend of the image and the map's colour.
  kBlend,
  /// Pixels whose map value is >= threshold are blended; the others show the image.
  kThreshold,
  /// The image with the contour lines of {map >= threshold} drawn in pure green.
  kContour,
};

struct SaliencyRenderOptions {
  /// OpenCV colormap (cv::COLORMAP_*, see colormap_by_name); the default is jet.
  TORCH_ARG(int, colormap) = 2;
  /// Weight of the image in the blend, 0..1 (the map's colour gets 1 - image_weight),
  /// as pytorch-grad-cam's image_weight.
  TORCH_ARG(double, image_weight) = 0.5;
  /// Channel order of a 3-channel input image.
  TORCH_ARG(ColourOrder, input_order) = ColourOrder::kBgr;
  /// Channel order of the returned image.
  TORCH_ARG(ColourOrder, output_order) = ColourOrder::kBgr;
  TORCH_ARG(SaliencyMode, mode) = SaliencyMode::kBlend;
  /// Map level, 0..1, for kThreshold and kContour.
  TORCH_ARG(double, threshold) = 0.5;
  /// Append a vertical bar at the right: the colormap from 0 (bottom row) to 1 (top
  /// row), as tall as the image, with "0" and "1" tick labels, on a dark background.
  TORCH_ARG(bool, colour_bar) = false;
  /// Text burned in at the top-left of the image (see burn_label); empty = none.
  TORCH_ARG(std::string, label) = "";
  /// Compute the blend (kBlend, and the coloured pixels of kThreshold) exactly as
  /// pytorch-grad-cam's show_cam_on_image does: map levels truncated rather than
  /// rounded, and the blend divided by its maximum. kContour has no blend and is
  /// unaffected.
  TORCH_ARG(bool, grad_cam_compatible) = false;
};

/// The saliency map `map` drawn over `image`.
/// requires: image CV_8UC1 or CV_8UC3 (in options.input_order), any size, not empty;
///           map CV_32FC1 of the image's size with values in [0,1] (values outside are
///           clamped, NaN counts as 0); options.image_weight and options.threshold in
///           [0,1]; options.colormap a cv::COLORMAP_* value.
/// ensures:  an owning CV_8UC3 image in options.output_order, of the image's size, or
///           wider by the colour bar's strip when options.colour_bar. Unless
///           grad_cam_compatible, a blended pixel is
///           round((1 - w) * colormap(round(255 * map)) + w * image), w = image_weight.
///           The input is not modified.
/// throws c10::Error naming both sizes when the sizes differ, and for the other
///        requirements.
cv::Mat render_saliency(const cv::Mat& image, const cv::Mat& map, const SaliencyRenderOptions& options = {});

/// pytorch-grad-cam's show_cam_on_image, bit for bit (float32 arithmetic):
///   heat = applyColorMap(uint8(255 * mask), colormap)  (truncation; BGR, to RGB when use_rgb)
///   cam  = (1 - image_weight) * heat / 255 + image_weight * image
///   out  = uint8(255 * cam / max(cam))                 (truncation)
/// requires: rgb_float01 CV_32FC3 with values in [0,1], in the order use_rgb implies
///           (RGB when use_rgb, BGR otherwise); mask CV_32FC1 of the same size with
///           values in [0,1]; image_weight in [0,1]; colormap a cv::COLORMAP_* value.
/// ensures:  an owning CV_8UC3 image (RGB when use_rgb, BGR otherwise). When the blend
///           is zero everywhere (image_weight 1 and a black image), the result is black
///           rather than the original's NaN-derived values.
/// throws c10::Error when the image is not CV_32FC3 or has values outside [0,1] (the
///        original rejects max > 1), when mask values lie outside [0,1], for a size
///        mismatch (both sizes named) and for image_weight outside [0,1].
cv::Mat show_cam_on_image(const cv::Mat& rgb_float01, const cv::Mat& mask, bool use_rgb = false,
                          int colormap = 2, double image_weight = 0.5);

/// `tiles` laid out left to right, top to bottom, `columns` per row.
/// requires: tiles non-empty, each CV_8UC3 (any colour order: pixels are copied as they
///           are) and not empty, sizes may differ; columns >= 1; captions empty or one
///           per tile.
/// ensures:  an owning CV_8UC3 image on a dark grey (32) background. Every cell is as
///           large as the largest tile (W x H); a tile sits centred at the top of its
///           cell with its caption (light grey, centred, clipped to the cell) in a 20 px
///           strip under it. With c = min(columns, tiles.size()) and r rows:
///           width = 4 + c * (W + 4), height = 4 + r * (H + 4 + (captions ? 20 : 0)).
/// throws c10::Error for the requirements above (naming the offending tile).
cv::Mat tile_grid(const std::vector<cv::Mat>& tiles, int columns, const std::vector<std::string>& captions = {});

/// Burns `text` into the top-left corner of `image`: white text on a near-black box,
/// so it reads on any image; the font scales with the image width. Text that does
/// not fit is clipped at the image border. Empty text leaves the image unchanged.
/// requires: image CV_8UC1 or CV_8UC3 (colours are grey, so either colour order).
/// ensures:  `image` modified in place (its buffer, shared by every Mat header that
///           refers to it).
/// throws c10::Error for other image types.
void burn_label(cv::Mat& image, const std::string& text);

}  // namespace attend::vision
