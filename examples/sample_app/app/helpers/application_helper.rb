module ApplicationHelper
  # Small thumbnail of a photo. Uses an Active Storage variant (ImageMagick via
  # mini_magick) when ImageMagick is installed; otherwise falls back to the
  # original file scaled by the browser, so the page renders either way.
  def photo_thumbnail(photo, size: 240)
    return tag.span("no image", class: "thumb thumb--missing") unless photo.image.attached?

    if photo.image.variable? && ImageMagick.available?
      image_tag photo_image_path(photo.image.variant(resize_to_limit: [size, size])), alt: photo.title, class: "thumb"
    else
      image_tag photo_image_path(photo.image), alt: photo.title, width: size, class: "thumb"
    end
  end

  # Relative URL of an attachment or variant. With resolve_model_to_route =
  # :rails_storage_proxy this is /rails/active_storage/{blobs,representations}/proxy/...
  # A path rather than image_tag's default absolute URL keeps pages right
  # behind a TLS-terminating load balancer whatever scheme the app sees.
  def photo_image_path(attachment_or_variant)
    polymorphic_path(attachment_or_variant)
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
