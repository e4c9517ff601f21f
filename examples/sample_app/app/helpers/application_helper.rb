module ApplicationHelper
  # Small thumbnail of a photo. Uses an Active Storage variant (ImageMagick via
  # mini_magick) when ImageMagick is installed; otherwise falls back to the
  # original file scaled by the browser, so the page renders either way.
  def photo_thumbnail(photo, size: 240)
    return tag.span("no image", class: "thumb thumb--missing") unless photo.image.attached?

    if photo.image.variable? && ImageMagick.available?
      image_tag photo.image.variant(resize_to_limit: [size, size]), alt: photo.title, class: "thumb"
    else
      image_tag photo.image, alt: photo.title, width: size, class: "thumb"
    end
  end

  module ImageMagick
    # True when ImageMagick's `convert` (IM6) or `magick` (IM7) is on PATH.
    # Looked up once per process.
    def self.available?
      return @available if defined?(@available)

      @available = ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).any? do |dir|
        %w[convert magick].any? { |cmd| File.executable?(File.join(dir, cmd)) }
      end
    end
  end
end
