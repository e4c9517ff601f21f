# This file should ensure the existence of records required to run the application in every environment (production,
# development, test). The code here should be idempotent so that it can be executed at any point in every environment.
# The data can then be loaded with the bin/rails db:seed command (or created alongside the database with db:setup).

# A few books with covers, each created once: running this again changes nothing.
[
  [ "Dune", "dune.png" ],
  [ "Leviathan Wakes", "leviathan.png" ],
  [ "The Hobbit", "hobbit.png" ]
].each do |title, cover|
  book = Book.find_or_create_by!(title: title)
  next if book.cover.attached?

  book.cover.attach(io: File.open(Rails.root.join("db/seeds/covers", cover)), filename: cover, content_type: "image/png")
  book.cover.analyze # now, not in a background job that this short-lived process might not finish
end
