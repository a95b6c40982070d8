//! Item changes, stock adjustments, general orders, carts and wishlists.

use hurry_persistence::{ItemChange, NewGeneralOrder, Placement, StockAdjustment};

use super::*;

on_both_backends!(
    only_the_owner_updates_or_deletes_an_item_and_orders_survive_deletion,
    stock_adjustments_never_go_below_zero_and_drops_are_refused,
    drop_units_move_total_and_stock_together,
    a_general_order_takes_every_line_or_nothing_at_server_prices,
    concurrent_general_orders_never_oversell,
    ordering_from_the_cart_removes_exactly_the_ordered_lines,
    cart_and_wishlist_keep_live_items_per_user,
    deleting_a_user_empties_cart_and_wishlist,
);

struct Shop {
    seller: i64,
    buyer: i64,
    general: i64,
    other: i64,
    drop: i64,
}

/// A seller with two general items (stock 7, price 189,000) and a drop; a buyer.
async fn shop(db: &TestStore) -> Result<Shop> {
    let seller = db
        .create_user(&new_user("seller@hurry.test", &["seller"]))
        .await?
        .id;
    let buyer = db.create_user(&new_user("buyer@hurry.test", &[])).await?.id;
    let general = db.create_item(&new_item(seller, "Sneaker", None)).await?.id;
    let other = db.create_item(&new_item(seller, "Sock", None)).await?.id;
    let drop = db
        .create_item(&new_item(seller, "Limited", Some(drop_spec(0, 60))))
        .await?
        .id;
    Ok(Shop {
        seller,
        buyer,
        general,
        other,
        drop,
    })
}

fn general_order(id: i64, user_id: i64, lines: &[(i64, i64)]) -> NewGeneralOrder {
    NewGeneralOrder {
        id,
        user_id,
        lines: lines.to_vec(),
        payment_due_at: Some(at(600)),
        created_at: at(0),
        idempotency: None,
        from_cart: false,
    }
}

async fn stock_of(db: &TestStore, item_id: i64) -> Result<i64> {
    Ok(db.item_by_id(item_id).await?.context("item")?.stock)
}

async fn only_the_owner_updates_or_deletes_an_item_and_orders_survive_deletion(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;
    let stranger = db
        .create_user(&new_user("other@hurry.test", &["seller"]))
        .await?
        .id;
    let change = ItemChange {
        name: Some("Renamed".into()),
        description: None,
        price: Some(200_000),
    };
    let placed = db
        .place_order(&general_order(1, shop.buyer, &[(shop.general, 1)]))
        .await?;

    // Act
    let by_stranger = db.update_item(shop.general, stranger, &change).await?;
    let by_owner = db.update_item(shop.general, shop.seller, &change).await?;
    let deleted_by_stranger = db.delete_item(shop.general, stranger).await?;
    let deleted = db.delete_item(shop.general, shop.seller).await?;
    let deleted_again = db.delete_item(shop.general, shop.seller).await?;

    // Assert
    assert!(matches!(placed, Placement::Placed(_)), "{placed:?}");
    assert_eq!(by_stranger, None);
    let updated = by_owner.context("updated")?;
    assert_eq!((updated.name.as_str(), updated.price), ("Renamed", 200_000));
    assert_eq!(
        updated.description, "All about Sneaker",
        "unchanged field kept"
    );
    assert!(!deleted_by_stranger);
    assert!(deleted);
    assert!(!deleted_again);
    assert_eq!(db.item_by_id(shop.general).await?, None);
    let order = db.order_by_id(1).await?.context("the order stays")?;
    assert_eq!(order.lines[0].item_id, shop.general);
    assert_eq!(
        order.lines[0].unit_price, 189_000,
        "the price it was bought at"
    );
    let events = db
        .count("SELECT COUNT(*) FROM outbox WHERE event_type IN ('item.updated', 'item.deleted')")
        .await?;
    assert_eq!(events, 2);
    Ok(())
}

async fn stock_adjustments_never_go_below_zero_and_drops_are_refused(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;

    // Act
    let added = db.adjust_stock(shop.general, shop.seller, 5).await?;
    let removed = db.adjust_stock(shop.general, shop.seller, -12).await?;
    let too_many = db.adjust_stock(shop.general, shop.seller, -1).await?;
    let not_owner = db.adjust_stock(shop.general, shop.buyer, 1).await?;
    let on_drop = db.adjust_stock(shop.drop, shop.seller, 1).await?;

    // Assert
    let StockAdjustment::Adjusted(after_add) = added else {
        anyhow::bail!("adjusted: {added:?}");
    };
    assert_eq!(after_add.stock, 12);
    assert!(matches!(removed, StockAdjustment::Adjusted(ref item) if item.stock == 0));
    assert_eq!(too_many, StockAdjustment::Insufficient);
    assert_eq!(not_owner, StockAdjustment::NotFound);
    assert_eq!(on_drop, StockAdjustment::IsDrop);
    assert_eq!(stock_of(&db, shop.general).await?, 0);
    Ok(())
}

async fn drop_units_move_total_and_stock_together(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;

    // Act
    db.adjust_drop_units(shop.drop, 25).await?;
    db.adjust_drop_units(shop.drop, -5).await?;

    // Assert
    let item = db.item_by_id(shop.drop).await?.context("drop")?;
    assert_eq!(item.stock, 120);
    assert_eq!(item.drop.context("spec")?.total_units, 120);
    Ok(())
}

async fn a_general_order_takes_every_line_or_nothing_at_server_prices(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;
    let mut keyed = general_order(2, shop.buyer, &[(shop.general, 3), (shop.other, 2)]);
    keyed.idempotency = Some(hurry_persistence::IdempotencyEntry {
        key: "k".into(),
        request_hash: "h".into(),
    });

    // Act
    let short = db
        .place_order(&general_order(
            1,
            shop.buyer,
            &[(shop.general, 1), (shop.other, 8)],
        ))
        .await?;
    let unknown = db
        .place_order(&general_order(
            1,
            shop.buyer,
            &[(shop.general, 1), (9_999, 1)],
        ))
        .await?;
    let with_drop = db
        .place_order(&general_order(1, shop.buyer, &[(shop.drop, 1)]))
        .await?;
    let stock_after_refusals = (
        stock_of(&db, shop.general).await?,
        stock_of(&db, shop.other).await?,
    );
    let placed = db.place_order(&keyed).await?;

    // Assert
    assert_eq!(short, Placement::InsufficientStock(shop.other));
    assert_eq!(unknown, Placement::UnknownItem(9_999));
    assert_eq!(with_drop, Placement::DropItem(shop.drop));
    assert_eq!(
        stock_after_refusals,
        (7, 7),
        "a refused order takes nothing"
    );
    assert_eq!(db.order_by_id(1).await?, None);
    let Placement::Placed(order) = placed else {
        anyhow::bail!("placed: {placed:?}");
    };
    assert_eq!(order.amount, 5 * 189_000);
    assert_eq!(order.status, "pending_payment");
    assert_eq!(db.order_by_id(2).await?, Some(order));
    assert_eq!(
        (
            stock_of(&db, shop.general).await?,
            stock_of(&db, shop.other).await?
        ),
        (4, 5)
    );
    let record = db
        .idempotency_record(shop.buyer, "k")
        .await?
        .context("key")?;
    assert_eq!(record.order_id, Some(2));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM outbox WHERE event_type = 'order.created'")
            .await?,
        1
    );
    Ok(())
}

async fn concurrent_general_orders_never_oversell(backend: Backend) -> Result<()> {
    // Arrange: 7 units, 40 buyers of one unit each at the same time.
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;
    let tasks: Vec<_> = (1..=40)
        .map(|id| {
            let store = db.store.clone();
            let order = general_order(id, shop.buyer, &[(shop.general, 1), (shop.other, 1)]);
            tokio::spawn(async move { store.place_order(&order).await })
        })
        .collect();

    // Act
    let mut placed = 0;
    for task in tasks {
        match task.await?? {
            Placement::Placed(_) => placed += 1,
            Placement::InsufficientStock(_) => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }

    // Assert
    assert_eq!(placed, 7);
    assert_eq!(stock_of(&db, shop.general).await?, 0);
    assert_eq!(stock_of(&db, shop.other).await?, 0);
    assert_eq!(db.num_rows("orders").await?, 7);
    Ok(())
}

async fn ordering_from_the_cart_removes_exactly_the_ordered_lines(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;
    db.set_cart_item(shop.buyer, shop.general, 2).await?;
    db.set_cart_item(shop.buyer, shop.other, 1).await?;
    let mut from_cart = general_order(1, shop.buyer, &[(shop.general, 2)]);
    from_cart.from_cart = true;
    let mut refused = general_order(2, shop.buyer, &[(shop.other, 100)]);
    refused.from_cart = true;

    // Act
    let placed = db.place_order(&from_cart).await?;
    let short = db.place_order(&refused).await?;

    // Assert
    assert!(matches!(placed, Placement::Placed(_)));
    assert_eq!(short, Placement::InsufficientStock(shop.other));
    let cart = db.cart(shop.buyer).await?;
    let left: Vec<(i64, i64)> = cart
        .iter()
        .map(|line| (line.item_id, line.quantity))
        .collect();
    assert_eq!(
        left,
        [(shop.other, 1)],
        "a refused order leaves the cart as it was"
    );
    Ok(())
}

async fn cart_and_wishlist_keep_live_items_per_user(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;

    // Act
    let set = db.set_cart_item(shop.buyer, shop.general, 2).await?;
    let replaced = db.set_cart_item(shop.buyer, shop.general, 5).await?;
    let other = db.set_cart_item(shop.buyer, shop.other, 1).await?;
    let unknown = db.set_cart_item(shop.buyer, 9_999, 1).await?;
    let zero = db.set_cart_item(shop.buyer, shop.other, 0).await?;
    let wished = db.add_wishlist_item(shop.buyer, shop.drop).await?;
    let wished_again = db.add_wishlist_item(shop.buyer, shop.drop).await?;
    let wished_unknown = db.add_wishlist_item(shop.buyer, 9_999).await?;
    db.add_wishlist_item(shop.buyer, shop.other).await?;
    db.remove_wishlist_item(shop.buyer, shop.other).await?;
    let sellers_cart = db.cart(shop.seller).await?;

    // Assert
    assert!(set && replaced && other && zero && wished && wished_again);
    assert!(!unknown && !wished_unknown);
    let cart = db.cart(shop.buyer).await?;
    assert_eq!(cart.len(), 1);
    assert_eq!(
        (
            cart[0].item_id,
            cart[0].quantity,
            cart[0].price,
            cart[0].name.as_str()
        ),
        (shop.general, 5, 189_000, "Sneaker")
    );
    assert!(sellers_cart.is_empty());
    let wishlist: Vec<i64> = db
        .wishlist(shop.buyer)
        .await?
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(wishlist, [shop.drop]);
    db.delete_item(shop.general, shop.seller).await?;
    assert!(
        db.cart(shop.buyer).await?.is_empty(),
        "deleted items leave the cart view"
    );
    db.set_cart_item(shop.buyer, shop.other, 3).await?;
    db.clear_cart(shop.buyer).await?;
    assert!(db.cart(shop.buyer).await?.is_empty());
    Ok(())
}

async fn deleting_a_user_empties_cart_and_wishlist(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let shop = shop(&db).await?;
    db.set_cart_item(shop.buyer, shop.general, 2).await?;
    db.add_wishlist_item(shop.buyer, shop.other).await?;
    db.set_cart_item(shop.seller, shop.general, 1).await?;

    // Act
    db.delete_user(shop.buyer, "shredded", "freed").await?;

    // Assert
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM cart_items WHERE user_id = {}",
            shop.buyer
        ))
        .await?,
        0
    );
    assert_eq!(db.num_rows("wishlist_items").await?, 0);
    assert_eq!(
        db.cart(shop.seller).await?.len(),
        1,
        "other users' carts stay"
    );
    Ok(())
}
