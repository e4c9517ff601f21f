class ApplicationMailer < ActionMailer::Base
  default from: "Pinboard <hello@pinboard.example>"
  layout "mailer"
end
